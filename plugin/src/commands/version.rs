//! `kubectl ns version`: the plugin's version and the agents'.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::VersionResponse;

use crate::agent::route::{self, Route};
use crate::cli::VersionArgs;
use crate::error::{self, Failure};
use crate::kube::resolve::pod_ready;

/// Reported versions → how many agents report each; and the agents that
/// could not be asked, with why.
fn tally(
    reported: BTreeMap<String, Result<VersionResponse, String>>,
) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut failed = Vec::new();
    for (pod, v) in reported {
        match v {
            Ok(v) => *counts.entry(v.version).or_insert(0) += 1,
            Err(e) => failed.push(format!("{pod}: {e}")),
        }
    }
    (counts, failed)
}

pub async fn run(args: VersionArgs) -> Result<u8, Failure> {
    route::no_pod_namespace(&args.kube, "version")?;
    let mine = env!("CARGO_PKG_VERSION");
    // Which binary kubectl picked, when plugins of one name shadow others.
    match std::env::current_exe() {
        Ok(path) => println!("kubectl-ns {mine} ({})", path.display()),
        Err(_) => println!("kubectl-ns {mine}"),
    }
    let route = Route::of(&args.kube);
    if let Some(addr) = route.direct() {
        let v = route::direct_version(addr).await?;
        let runtime = if v.runtime.is_empty() {
            "no CRI runtime found"
        } else {
            &v.runtime
        };
        let node = if v.node_name.is_empty() {
            "unknown (no --node-name)"
        } else {
            &v.node_name
        };
        println!(
            "agent {} at {addr} (runtime: {runtime}, node reference PID {}, node {node})",
            v.version, v.node_pid
        );
        if v.insecure_skip_authz {
            eprintln!("warning: the agent runs with --insecure-skip-authz: it checks no identity");
        }
        if !v.policy_error.is_empty() {
            eprintln!("warning: the agent's policy: {}", v.policy_error);
        }
        if v.version != mine {
            eprintln!(
                "warning: the agent's version ({}) differs from kubectl-ns's ({mine})",
                v.version
            );
        }
        return Ok(0);
    }
    // Without a reachable cluster, the plugin's version is all there is.
    let Ok(r) = route::resolver(&args.kube).await else {
        return Ok(0);
    };
    let pods = crate::kube::agents::list(&r.client, &r.agent_namespace, None).await;
    match pods {
        Ok(list) if list.is_empty() => {
            println!(
                "agents: none in namespace {} (`kubectl ns install`)",
                r.agent_namespace
            )
        }
        Ok(list) => {
            // The versions the agents report, not their image tags: a tag
            // may be a digest or a moving name like `latest`.
            let (ready, not_ready): (Vec<&Pod>, Vec<&Pod>) = list.iter().partition(|p| pod_ready(p));
            let names = ready.iter().filter_map(|p| p.metadata.name.clone());
            let (counts, failed) = tally(route::agent_versions(&r, args.kube.agent_port, names).await);
            for (version, n) in counts {
                println!("agents: {version} on {n} node(s)");
                if version != mine {
                    eprintln!("warning: agents at {version} differ from kubectl-ns's version ({mine})");
                }
            }
            for f in failed {
                eprintln!("kubectl-ns: cannot ask agent {f}");
            }
            if !not_ready.is_empty() {
                println!(
                    "agents: {} not ready (`kubectl ns status` says why)",
                    not_ready.len()
                );
            }
        }
        Err(e) => eprintln!("kubectl-ns: {}", error::api_failure("cannot list the agents", e)),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_counted_as_reported() {
        let v = |version: &str| {
            Ok(VersionResponse {
                version: version.to_owned(),
                ..Default::default()
            })
        };
        let reported = BTreeMap::from([
            ("a".to_owned(), v("0.1.0")),
            ("b".to_owned(), v("0.1.0")),
            ("c".to_owned(), v("0.2.0")),
            ("d".to_owned(), Err("refused".to_owned())),
        ]);
        let (counts, failed) = tally(reported);
        assert_eq!(
            counts,
            BTreeMap::from([("0.1.0".to_owned(), 2), ("0.2.0".to_owned(), 1)])
        );
        assert_eq!(failed, ["d: refused"]);
    }
}
