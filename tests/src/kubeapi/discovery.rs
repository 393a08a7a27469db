//! What kubectl asks before a command: the server's `/version`, and the
//! aggregated discovery documents (`apidiscovery.k8s.io/v2`) a v1.32 API
//! server answers `/api` and `/apis` with when asked for them, as kubectl
//! 1.32 does. They list only the core resources the fake serves; kubectl
//! caches them (`$KUBECACHEDIR/discovery`), so only its first command
//! against a server pays these round trips.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::responses::json_response;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `GET /version`, as a v1.32 server answers it.
pub(super) fn version() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.13",
            "gitTreeState": "clean", "goVersion": "go1.23.12", "compiler": "gc", "platform": "linux/amd64",
        }),
    )
}

/// `GET /api` (`core`) or `/apis`: the core v1 group, or no groups.
pub(super) fn discovery(core: bool) -> Response<Full<Bytes>> {
    let items = if core {
        vec![json!({
            "metadata": {"creationTimestamp": null},
            "versions": [{"version": "v1", "freshness": "Current", "resources": [
                resource("pods", "Pod", true, &["exec", "portforward"]),
                resource("nodes", "Node", false, &[]),
                resource("namespaces", "Namespace", false, &[]),
                resource("configmaps", "ConfigMap", true, &[]),
            ]}],
        })]
    } else {
        Vec::new()
    };
    let body = json!({
        "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {}, "items": items,
    });
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(AGGREGATED),
    );
    resp
}

/// A core resource's discovery entry, with its connect subresources
/// (`exec`, `portforward`), which are created (POST) or upgraded (GET).
fn resource(plural: &str, kind: &str, namespaced: bool, connect: &[&str]) -> Value {
    let subresources: Vec<Value> = connect
        .iter()
        .map(|s| {
            let options = format!("Pod{}Options", if *s == "exec" { "Exec" } else { "PortForward" });
            json!({"subresource": s, "responseKind": {"group": "", "version": "v1", "kind": options}, "verbs": ["create", "get"]})
        })
        .collect();
    let mut entry = json!({
        "resource": plural,
        "responseKind": {"group": "", "version": "v1", "kind": kind},
        "scope": if namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": kind.to_lowercase(),
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    });
    if !subresources.is_empty() {
        entry["subresources"] = subresources.into();
    }
    entry
}
