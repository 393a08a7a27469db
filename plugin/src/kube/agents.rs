//! The agent pods: the one listing by the agent's label, in the agent's
//! namespace, of every node or of one, that resolve, fan-out, status,
//! version and install all read.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::resolve::AGENT_LABEL;

/// The agent pods in `namespace`, on `node` if given.
pub async fn list(
    client: &kube::Client,
    namespace: &str,
    node: Option<&str>,
) -> Result<Vec<Pod>, kube::Error> {
    let mut lp = ListParams::default().labels(AGENT_LABEL);
    if let Some(node) = node {
        lp = lp.fields(&format!("spec.nodeName={node}"));
    }
    Ok(Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&lp)
        .await?
        .items)
}
