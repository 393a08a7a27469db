//! Compiles the agent API and the CRI subset with protox, so no system
//! `protoc` is needed to build the project.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "kns/agent/v1/agent.proto",
        "kns/agent/v1/sessions.proto",
        "cri/runtime/v1/api.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .bytes(".kns.agent.v1")
        .compile_fds(fds)?;
    Ok(())
}
