//! `kns-lab`: the test harness's containerd lab and image builder, for the
//! demo and for people reproducing a test by hand.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kns_tests::containerd::{Lab, PodSpec};

/// Private containerd labs and local OCI images, for the kubectl-ns demo.
#[derive(Debug, Parser)]
#[command(name = "kns-lab")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a private containerd under DIR and run a pod serving HTTP on
    /// PORT; prints the container ID on the last line.
    Up {
        dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "web-1")]
        name: String,
    },
    /// Remove everything `up` made under DIR: pods, containerd, bridge,
    /// cgroups.
    Down { dir: PathBuf },
    /// Write an OCI image archive holding only BINARY (a static
    /// kubectl-ns-agent, its Entrypoint) to OUT; prints the image reference
    /// last.
    AgentImage {
        binary: PathBuf,
        out: PathBuf,
        #[arg(long)]
        name: String,
        /// The OCI architecture BINARY was built for.
        #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64"])]
        arch: String,
        /// Add the toolbox (ip, ss, ps, top, tcpdump, strace, dig and their
        /// libraries) from this machine's Debian packages, and BUSYBOX
        /// (Debian's dynamic busybox; scripts/image fetches it).
        #[arg(long, requires = "busybox")]
        toolbox: bool,
        #[arg(long, value_name = "BUSYBOX", requires = "toolbox")]
        busybox: Option<PathBuf>,
    },
    /// Write the busybox OCI image archive to OUT.
    BusyboxImage {
        out: PathBuf,
        #[arg(long, default_value = kns_tests::containerd::IMAGE)]
        name: String,
    },
}

fn main() -> ExitCode {
    let r = match Cli::parse().command {
        Cmd::Up { dir, port, name } => Lab::start(&dir).and_then(|lab| {
            let pod = lab.run_pod(&PodSpec::httpd(&name, port))?;
            eprintln!(
                "containerd at unix://{}, pod {name} sandbox {}",
                lab.socket.display(),
                pod.sandbox_id
            );
            println!("{}", pod.container_id);
            // Keep the lab running for the caller: `down` removes it.
            std::mem::forget(lab);
            Ok(())
        }),
        Cmd::Down { dir } => {
            Lab::down(&dir);
            Ok(())
        }
        Cmd::AgentImage {
            binary,
            out,
            name,
            arch,
            toolbox: _,
            busybox,
        } => {
            let spec = match busybox {
                Some(b) => kns_tests::image::toolbox_spec(&name, binary, &arch, &b),
                None => Ok(kns_tests::image::agent_spec(&name, binary, &arch)),
            };
            spec.and_then(|s| kns_tests::image::build(&s, &out))
                .map(|()| println!("{name}"))
        }
        Cmd::BusyboxImage { out, name } => {
            kns_tests::image::build(&kns_tests::image::busybox_spec(&name), &out)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kns-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
