//! `kubectl ns version`: the plugin's version and the agents'.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::VersionRequest;
use kns_proto::agent::agent_client::AgentClient;
use kube::api::{Api, ListParams};

use crate::cli::VersionArgs;
use crate::cluster;
use crate::exit::{self, Failure};
use crate::resolve::{AGENT_LABEL, agent_version};
use crate::transport;

/// Agent image tags → how many agent pods run each.
fn versions(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in pods {
        *out.entry(agent_version(p)).or_insert(0) += 1;
    }
    out
}

pub async fn run(args: VersionArgs) -> Result<u8, Failure> {
    let mine = env!("CARGO_PKG_VERSION");
    println!("kubectl-ns {mine}");
    if let Some(addr) = &args.kube.agent {
        let mut client = AgentClient::new(transport::connect(addr).await?);
        crate::timings::grpc_call();
        let v = client
            .version(VersionRequest {})
            .await
            .map_err(|s| exit::status_failure(&s))?
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
        if v.version != mine {
            eprintln!(
                "warning: the agent's version ({}) differs from kubectl-ns's ({mine})",
                v.version
            );
        }
        return Ok(0);
    }
    // Without a reachable cluster, the plugin's version is all there is.
    let Ok(r) = cluster::resolver(&args.kube).await else {
        return Ok(0);
    };
    let pods = Api::<Pod>::namespaced(r.client.clone(), &r.agent_namespace)
        .list(&ListParams::default().labels(AGENT_LABEL))
        .await;
    match pods {
        Ok(list) if list.items.is_empty() => {
            println!(
                "agents: none in namespace {} (`kubectl ns install`)",
                r.agent_namespace
            )
        }
        Ok(list) => {
            for (version, n) in versions(&list.items) {
                println!("agents: {version} on {n} node(s)");
                if version != mine {
                    eprintln!("warning: agents at {version} differ from kubectl-ns's version ({mine})");
                }
            }
        }
        Err(e) => eprintln!(
            "kubectl-ns: {}",
            exit::api_failure("cannot list the agents", e).message
        ),
    }
    Ok(0)
}
