//! `kubectl ns version`.

use kns_proto::agent::VersionRequest;
use kns_proto::agent::agent_client::AgentClient;

use crate::cli::VersionArgs;
use crate::exit::Failure;
use crate::transport;

pub async fn run(args: VersionArgs) -> Result<u8, Failure> {
    println!("kubectl-ns {}", env!("CARGO_PKG_VERSION"));
    if let Some(addr) = args.agent {
        let mut client = AgentClient::new(transport::connect(&addr).await?);
        let v = client
            .version(VersionRequest {})
            .await
            .map_err(|s| transport::status_failure(&s))?
            .into_inner();
        let runtime = if v.runtime.is_empty() {
            "no CRI runtime found"
        } else {
            &v.runtime
        };
        println!(
            "agent {} at {addr} (runtime: {runtime}, node reference PID {})",
            v.version, v.node_pid
        );
        if v.version != env!("CARGO_PKG_VERSION") {
            eprintln!(
                "warning: the agent's version ({}) differs from kubectl-ns's",
                v.version
            );
        }
    }
    Ok(0)
}
