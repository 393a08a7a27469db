//! `kubectl-ns`: a kubectl plugin that runs the node's tools inside exactly
//! the namespaces of a pod's container, through the kubectl-ns agent.
//!
//! The plugin never enters namespaces itself; it parses and validates what
//! the user asked for, reaches an agent, and drives it over gRPC. The
//! folders follow that path: `cli` (what was asked), `commands` (one verb
//! each), `kube` (pods, nodes and agent pods through the API), `agent` (the
//! route and connection to an agent, many at once), `report` (what agents
//! observed, judged and tabled), `error` (every failure, its wording and
//! exit code).
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod commands;
pub mod complete;
pub mod error;
pub mod kube;
pub mod report;
pub mod timings;

/// Labels from pairs, for building test objects.
#[cfg(test)]
pub(crate) fn label_map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A running pod with one container `app` of runtime ID `id`, for tests.
#[cfg(test)]
pub(crate) fn running_pod(
    namespace: &str,
    name: &str,
    node: &str,
    id: &str,
) -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodSpec, PodStatus,
    };
    Pod {
        metadata: ::kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: Some(format!("{name}-uid")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                container_id: Some(format!("containerd://{id}")),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}
