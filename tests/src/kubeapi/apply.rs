//! Writes and watches: server-side apply (merging applied fields), the
//! DaemonSet controller and kubelets scheduling and readying its pods,
//! watch streams of stored objects, and delete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use super::objects::running_pod;
use super::responses::{bad_request, json_response, status};
use super::{Body, FakeApi, State, scheduler};

/// Server-side apply, as far as kubectl-ns uses it: the applied fields are
/// merged into the stored object (maps merge, everything else is replaced;
/// fields dropped from a later apply are not removed), with a new
/// generation and resourceVersion. A DaemonSet is then scheduled at once,
/// as its controller and the kubelets would report it: one pod on each
/// node its template selects, Pending on a node that is not Ready, and
/// ready a moment later unless agents are set to fail.
pub(super) fn apply(
    state: &Arc<Mutex<State>>,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    if content_type != "application/apply-patch+yaml" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake supports only server-side apply, not {content_type}"),
        );
    }
    let Ok(applied) = serde_json::from_slice::<Value>(body) else {
        return bad_request("the body is not JSON".into());
    };
    let mut st = state.lock().expect("state");
    let mut obj = st.objects.get(path).cloned().unwrap_or_else(|| json!({}));
    merge(&mut obj, applied);
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
    obj["metadata"]["generation"] = json!(generation);
    obj["metadata"]["uid"] = json!(format!("uid-{}", path.len()));
    obj["metadata"]["resourceVersion"] = json!(st.bump().to_string());
    if obj["kind"] == "DaemonSet" {
        let becoming_ready = schedule_daemonset(&mut st, &mut obj, generation);
        if !becoming_ready.is_empty() {
            let (state, path) = (state.clone(), path.to_owned());
            tokio::spawn(async move {
                // Long enough that a loaded machine's plugin still sees
                // the rollout at 0 before it completes.
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                agents_ready(&state, &path, &becoming_ready);
            });
        }
    }
    st.objects.insert(path.to_owned(), obj.clone());
    json_response(StatusCode::OK, &obj)
}

/// Merges `from` into `into`: objects key by key, anything else replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn template_labels(ds: &Value) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(ds["spec"]["template"]["metadata"]["labels"].clone()).unwrap_or_default()
}

/// Replaces the DaemonSet's pods and sets its status; returns the names of
/// the pods that will become ready.
fn schedule_daemonset(st: &mut State, ds: &mut Value, generation: i64) -> Vec<String> {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodCondition, PodStatus,
    };
    let ns = ds["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let name = ds["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let labels = template_labels(ds);
    let template = &ds["spec"]["template"]["spec"];
    let image = template["containers"][0]["image"].as_str().map(String::from);
    st.pods.retain(|p| {
        !(p.metadata.namespace.as_deref() == Some(&ns) && p.metadata.labels.as_ref() == Some(&labels))
    });
    let nodes: Vec<Node> = st
        .nodes
        .iter()
        .filter(|n| scheduler::fits(template, n))
        .cloned()
        .collect();
    let mut becoming_ready = Vec::new();
    for node in &nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let pod_name = format!("{name}-{node_name}");
        let mut pod = running_pod(&ns, &pod_name, &node_name, &[("agent", "0000")]);
        pod.metadata.labels = Some(labels.clone());
        if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.image = image.clone();
        }
        let status = pod.status.get_or_insert_with(PodStatus::default);
        let not_ready = PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Some("ContainersNotReady".into()),
            message: Some("containers with unready status: [agent]".into()),
            ..Default::default()
        };
        status.conditions = Some(vec![not_ready]);
        let mut cs = status.container_statuses.as_mut().and_then(|c| c.first_mut());
        if let Some(cs) = cs.as_mut() {
            cs.ready = false;
        }
        if !scheduler::kubelet_reports(node) {
            // No kubelet reports for it: the pod stays Pending.
            status.phase = Some("Pending".into());
            status.container_statuses = None;
        } else if let (Some(f), Some(cs)) = (&st.agent_failure, cs) {
            // A container that never started (an image never pulled) has
            // no restarts and no last termination.
            let started = !f.last_reason.is_empty();
            cs.restart_count = if started { 3 } else { 0 };
            cs.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(f.waiting_reason.clone()),
                    message: Some(f.waiting_message.clone()),
                }),
                ..Default::default()
            });
            cs.last_state = started.then(|| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 128,
                    reason: Some(f.last_reason.clone()),
                    message: Some(f.last_message.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        } else {
            becoming_ready.push(pod_name);
        }
        st.pods.push(pod);
    }
    let n = nodes.len();
    ds["status"] = json!({
        "desiredNumberScheduled": n, "currentNumberScheduled": n, "numberReady": 0,
        "updatedNumberScheduled": n, "numberAvailable": 0, "numberUnavailable": n,
        "numberMisscheduled": 0, "observedGeneration": generation,
    });
    becoming_ready
}

/// The kubelets report the DaemonSet's started agents ready.
fn agents_ready(state: &Mutex<State>, ds_path: &str, pods: &[String]) {
    let mut st = state.lock().expect("state");
    let Some(mut ds) = st.objects.get(ds_path).cloned() else {
        return;
    };
    let ns = ds["metadata"]["namespace"].as_str().map(str::to_owned);
    let mut ready = 0;
    for p in st.pods.iter_mut() {
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.metadata.namespace == ns && pods.contains(&name) {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let mut fresh = running_pod(ns.as_deref().unwrap_or(""), &name, &node, &[("agent", "0000")]);
            fresh.metadata.labels = p.metadata.labels.clone();
            fresh.spec = p.spec.clone();
            *p = fresh;
            ready += 1;
        }
    }
    ds["status"]["numberReady"] = json!(ready);
    ds["status"]["numberAvailable"] = json!(ready);
    ds["status"]["numberUnavailable"] =
        json!(ds["status"]["desiredNumberScheduled"].as_i64().unwrap_or(0) - ready);
    ds["metadata"]["resourceVersion"] = json!(st.bump().to_string());
    st.objects.insert(ds_path.to_owned(), ds);
}

/// A watch on a collection of stored objects (`?watch=true`, optionally
/// `fieldSelector=metadata.name=NAME`), as the API server streams it: one
/// JSON watch event per line (`{"type":"MODIFIED","object":{…}}`), each
/// change after `resourceVersion` (the fake keeps no history: objects
/// changed since are sent as they are now), until `timeoutSeconds`.
pub(super) fn watch(
    state: Arc<Mutex<State>>,
    collection: String,
    q: &HashMap<String, String>,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let name = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let since: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800u64);
    let prefix = format!("{}/", collection.trim_end_matches('/'));
    let matching = move |st: &State| -> Vec<(String, Value)> {
        st.objects
            .iter()
            .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
            .filter(|(_, o)| name.as_deref().is_none_or(|n| o["metadata"]["name"] == n))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect()
    };
    let (mut changes, mut known) = {
        let st = state.lock().expect("state");
        let known: HashMap<String, Value> = matching(&st).into_iter().collect();
        (st.changes.subscribe(), known)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
        let rv = |o: &Value| -> u64 {
            o["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mut sent = since;
        // Without a resourceVersion, a watch starts with the current state.
        let mut initial: Vec<(&str, Value)> = if since == 0 {
            known.values().map(|o| ("ADDED", o.clone())).collect()
        } else {
            known
                .values()
                .filter(|o| rv(o) > since)
                .map(|o| ("MODIFIED", o.clone()))
                .collect()
        };
        loop {
            for (kind, o) in initial.drain(..) {
                sent = sent.max(rv(&o));
                let line = format!("{}\n", json!({"type": kind, "object": o}));
                if tx.send(Bytes::from(line)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                r = changes.changed() => if r.is_err() { return },
            }
            let now: HashMap<String, Value> = matching(&state.lock().expect("state")).into_iter().collect();
            for (k, o) in &now {
                if rv(o) > sent {
                    initial.push((
                        if known.contains_key(k) {
                            "MODIFIED"
                        } else {
                            "ADDED"
                        },
                        o.clone(),
                    ));
                }
            }
            for (k, o) in &known {
                if !now.contains_key(k) {
                    initial.push(("DELETED", o.clone()));
                }
            }
            known = now;
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(hyper::body::Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(frames).boxed_unsync())
        .expect("response")
}

/// Deletes an applied object; a DaemonSet takes its pods along, a
/// namespace everything in it.
pub(super) fn delete(state: &Mutex<State>, path: &str) -> Response<Full<Bytes>> {
    let mut st = state.lock().expect("state");
    let Some(obj) = st.objects.remove(path) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("{path} not found"));
    };
    st.bump();
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    match obj["kind"].as_str() {
        Some("DaemonSet") => {
            let labels: Option<std::collections::BTreeMap<String, String>> =
                serde_json::from_value(obj["spec"]["template"]["metadata"]["labels"].clone()).ok();
            st.pods
                .retain(|p| !(p.metadata.namespace == ns && p.metadata.labels == labels));
        }
        Some("Namespace") => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            st.pods.retain(|p| p.metadata.namespace.as_deref() != Some(&name));
            let prefix = format!("/namespaces/{name}/");
            st.objects.retain(|k, _| !k.contains(&prefix));
        }
        _ => {}
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    )
}

impl FakeApi {
    /// The objects applied so far, by API path.
    pub fn objects(&self) -> Vec<(String, Value)> {
        self.state
            .lock()
            .expect("state")
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
