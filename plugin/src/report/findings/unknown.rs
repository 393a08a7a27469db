//! Containers the agents see that no pod in the API owns.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::{ContainerInfo, Namespace};

use super::namespaces::{COMPARED, observed_host};
use super::{Finding, Kind, Observations, Severity, Unknowns, containers};

/// The annotation a mirror pod carries: the static pod's UID, which its
/// containers' labels name.
pub(super) const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the API's pods own: their UIDs, the static pods' UIDs their
/// mirror pods name, and their running containers' IDs.
pub struct Owners(HashSet<String>);

impl Owners {
    pub fn of(pods: &[Pod]) -> Owners {
        let mut owned = HashSet::new();
        for p in pods {
            owned.extend(p.metadata.uid.clone());
            owned.extend(
                p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MIRROR_ANNOTATION))
                    .cloned(),
            );
            owned.extend(containers(p).into_iter().filter_map(|(_, id)| id));
        }
        Owners(owned)
    }

    /// Whether a pod owns the container the agent listed.
    pub fn owns(&self, c: &ContainerInfo) -> bool {
        self.0.contains(&c.id) || (!c.pod_uid.is_empty() && self.0.contains(&c.pod_uid))
    }
}

/// Containers the agents see that no listed pod owns: neither by its
/// container ID in a pod's status, nor by its pod's UID (a mirror pod
/// names its static pod's UID in an annotation).
pub(super) fn unknown_workloads(
    pods: &[Pod],
    observed: &Observations,
    unknowns: &Unknowns,
    out: &mut Vec<Finding>,
) {
    let owned = Owners::of(pods);
    for (node, list) in observed {
        let Ok(list) = list else { continue };
        for c in &list.containers {
            let in_scope = match unknowns {
                Unknowns::All => true,
                Unknowns::Namespace(ns) => &c.pod_namespace == ns,
                Unknowns::Off => false,
            };
            if !in_scope || owned.owns(c) {
                continue;
            }
            let host: Vec<&str> = match (&c.process, &list.node) {
                (Some(p), Some(n)) => observed_host(p, n)
                    .into_iter()
                    // The node's user namespace is every container's unless
                    // it asked for its own: not worth naming.
                    .filter(|(k, host)| *host && *k != Namespace::User && COMPARED.contains(k))
                    .map(|(k, _)| k.proc_name())
                    .collect(),
                _ => Vec::new(),
            };
            out.push(Finding {
                node: node.clone(),
                namespace: c.pod_namespace.clone(),
                pod: c.pod_name.clone(),
                container: c.name.clone(),
                container_id: Some(c.id.clone()),
                kind: Kind::UnknownWorkload,
                detail: if host.is_empty() {
                    String::new()
                } else {
                    format!("in the node's {}", host.join(","))
                },
                declared: None,
                observed: Some(true),
                severity: Severity::High,
                explanation:
                    "runs on the node, but no pod in the API owns it: started outside Kubernetes or \
                              left behind, so nothing the API shows covers it"
                        .into(),
            });
        }
    }
}
