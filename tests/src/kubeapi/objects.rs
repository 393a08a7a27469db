//! Pods, nodes and their selectors: query-string parsing, the label and
//! field selectors kubectl-ns sends, and builders for the objects tests
//! add (`kube_meta`, `running_pod`, `agent_pod`).

use std::collections::HashMap;
use std::sync::Mutex;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::State;
use super::responses::{About, json_response, list, status};

pub(super) fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), percent_decode(v)))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality-based label selectors (`a=b,c=d`), as kubectl-ns sends.
fn labels_match(pod: &Pod, selector: &str) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        term.split_once('=')
            .is_some_and(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
    })
}

/// The one field selector the API supports on pods that kubectl-ns uses.
fn fields_match(pod: &Pod, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some(("spec.nodeName", v)) => pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(v),
            Some(("metadata.name", v)) => pod.metadata.name.as_deref() == Some(v),
            _ => false,
        })
}

/// Whether `pod` is `ns/name`.
pub(super) fn is_pod(pod: &Pod, ns: &str, name: &str) -> bool {
    pod.metadata.namespace.as_deref() == Some(ns) && pod.metadata.name.as_deref() == Some(name)
}

/// `GET /api/v1/nodes`.
pub(super) fn list_nodes(state: &Mutex<State>) -> Response<Full<Bytes>> {
    let st = state.lock().expect("state");
    let items: Vec<Value> = st
        .nodes
        .iter()
        .map(|n| serde_json::to_value(n).expect("node json"))
        .collect();
    list("NodeList", items)
}

/// `GET /api/v1/namespaces`: the namespaces stored by apply or
/// [`super::FakeApi::add_namespace`].
pub(super) fn list_namespaces(state: &Mutex<State>) -> Response<Full<Bytes>> {
    let st = state.lock().expect("state");
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("/api/v1/namespaces/")
                .is_some_and(|n| !n.contains('/'))
        })
        .map(|(_, v)| v.clone())
        .collect();
    list("NamespaceList", items)
}

/// `GET /api/v1/nodes/NAME`.
pub(super) fn get_node(state: &Mutex<State>, name: &str) -> Response<Full<Bytes>> {
    let st = state.lock().expect("state");
    match st.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name)) {
        Some(n) => json_response(StatusCode::OK, &serde_json::to_value(n).expect("node json")),
        None => About::core("nodes", name).not_found(),
    }
}

/// `GET /api/v1/pods` (`ns` `None`) or `/api/v1/namespaces/NS/pods`, with
/// the query's label and field selectors.
pub(super) fn list_pods(
    state: &Mutex<State>,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let st = state.lock().expect("state");
    let items: Vec<Value> = st
        .pods
        .iter()
        .filter(|p| ns.is_none() || p.metadata.namespace.as_deref() == ns)
        .filter(|p| q.get("labelSelector").is_none_or(|s| labels_match(p, s)))
        .filter(|p| q.get("fieldSelector").is_none_or(|s| fields_match(p, s)))
        .map(|p| serde_json::to_value(p).expect("pod json"))
        .collect();
    list("PodList", items)
}

/// `GET /api/v1/namespaces/NS/pods/NAME`.
pub(super) fn get_pod(state: &Mutex<State>, ns: &str, name: &str) -> Response<Full<Bytes>> {
    let st = state.lock().expect("state");
    let found = st.pods.iter().find(|p| is_pod(p, ns, name));
    match found {
        Some(p) => json_response(StatusCode::OK, &serde_json::to_value(p).expect("pod json")),
        None => About::core("pods", name).not_found(),
    }
}

/// `GET` of any other path: an object stored by apply, or 404.
pub(super) fn get_stored(state: &Mutex<State>, path: &str) -> Response<Full<Bytes>> {
    match state.lock().expect("state").objects.get(path) {
        Some(o) => json_response(StatusCode::OK, o),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find {path}"),
        ),
    }
}

/// Object metadata with a name and, for namespaced objects, a namespace.
pub fn kube_meta(
    name: &str,
    namespace: Option<&str>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        uid: Some(format!("{name}-uid")),
        ..Default::default()
    }
}

/// A running pod as the kubelet reports it: scheduled on `node`, one
/// running container per (name, runtime ID).
pub fn running_pod(namespace: &str, name: &str, node: &str, containers: &[(&str, &str)]) -> Pod {
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStatus, PodCondition, PodSpec, PodStatus,
    };
    Pod {
        metadata: kube_meta(name, Some(namespace)),
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            containers: containers
                .iter()
                .map(|(c, _)| Container {
                    name: (*c).to_owned(),
                    image: Some("docker.io/kns/busybox:1".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            container_statuses: Some(
                containers
                    .iter()
                    .map(|(c, id)| ContainerStatus {
                        name: (*c).to_owned(),
                        container_id: Some(format!("containerd://{id}")),
                        ready: true,
                        state: Some(ContainerState {
                            running: Some(ContainerStateRunning::default()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

/// An agent pod of the DaemonSet on `node`, labelled as kubectl-ns finds it.
pub fn agent_pod(name: &str, node: &str) -> Pod {
    let mut p = running_pod("kubectl-ns-system", name, node, &[("agent", "0000")]);
    p.metadata.labels = Some([("app.kubernetes.io/name".to_owned(), "kubectl-ns-agent".to_owned())].into());
    p
}
