//! The exec subresource, as `kubectl exec` reaches it: a WebSocket upgrade
//! with subprotocol `v5.channel.k8s.io` (or `v4.channel.k8s.io`), the
//! command run to its end in the container with the runtime's CRI
//! `ExecSync`, its stdout on channel 1, stderr on channel 2, and the
//! outcome as a `metav1.Status` on channel 3, then the close.
//!
//! A real API server proxies the request to the node's kubelet, which asks
//! the runtime's streaming server to run the command and relays its
//! streams back; here the fake asks the runtime directly, without those two
//! hops. A `kubectl exec` timed against the fake is therefore, if anything,
//! faster than on a real cluster: a fair baseline to compare kubectl-ns
//! with. Commands run without stdin or a terminal: what the benches and
//! tests send.

use std::sync::Mutex;

use futures_util::SinkExt;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use kns_proto::cri::ExecSyncRequest;
use kns_proto::cri::runtime_service_client::RuntimeServiceClient;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::State;
use super::objects::{is_pod, percent_decode, query};
use super::portforward::{Socket, websocket};
use super::rbac::{allowed, verb};
use super::responses::{About, bad_request, status};

/// The subprotocols the API server speaks for exec that carry the outcome
/// as a `Status` on channel 3, newest first (v5 adds stdin's close, which
/// a command without stdin does not use).
const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

/// `GET /api/v1/namespaces/NS/pods/NAME/exec?command=…&container=…`.
pub(super) fn exec(
    req: Request<Incoming>,
    state: &Mutex<State>,
    user: &str,
    ns: &str,
    name: &str,
) -> Response<Full<Bytes>> {
    let pod = About::core("pods", name);
    // `get` for the WebSocket upgrade, `create` for SPDY's POST.
    let verb = verb(req.method(), true);
    let attrs =
        json!({"verb": verb, "resource": "pods", "subresource": "exec", "namespace": ns, "name": name});
    let q = query(&req);
    let (may, found, cri) = {
        let st = state.lock().expect("state");
        let found = st.pods.iter().find(|p| is_pod(p, ns, name)).map(|p| {
            let wanted = q
                .get("container")
                .cloned()
                .or_else(|| p.spec.as_ref()?.containers.first().map(|c| c.name.clone()));
            let id = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| Some(&c.name) == wanted.as_ref()))
                .and_then(|c| {
                    c.container_id
                        .as_deref()?
                        .split_once("://")
                        .map(|(_, id)| id.to_owned())
                });
            (wanted.unwrap_or_default(), id)
        });
        (allowed(&st, user, &attrs), found, st.cri.clone())
    };
    if !may {
        return pod.forbidden(user, verb, "exec", Some(ns));
    }
    let Some((container, id)) = found else {
        return pod.not_found();
    };
    let Some(id) = id else {
        return bad_request(format!("container {container} is not valid for pod {name}"));
    };
    let cmd = commands(&req);
    if cmd.is_empty() {
        return bad_request("you must specify at least 1 command".into());
    }
    let Some(cri) = cri else {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no container runtime to run commands in (FakeApi::exec_with)".into(),
        );
    };
    let wants = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let streams = [(STDOUT, wants("stdout")), (STDERR, wants("stderr"))];
    websocket(req, &EXEC_PROTOCOLS, move |ws| run(ws, cri, id, cmd, streams))
}

/// Every `command` of the query, in order: the argv.
fn commands(req: &Request<Incoming>) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("command="))
        .map(percent_decode)
        .collect()
}

/// Runs `cmd` in container `id`, sends what it wrote on the streams the
/// client asked for, then its outcome, and closes.
async fn run(
    mut ws: Socket,
    cri: tonic::transport::Channel,
    id: String,
    cmd: Vec<String>,
    streams: [(u8, bool); 2],
) {
    let request = ExecSyncRequest {
        container_id: id,
        cmd: cmd.clone(),
        timeout: 0,
    };
    let end = match RuntimeServiceClient::new(cri).exec_sync(request).await {
        Ok(r) => {
            let r = r.into_inner();
            for ((channel, wanted), data) in streams.into_iter().zip([r.stdout, r.stderr]) {
                if wanted && !data.is_empty() {
                    let frame = [&[channel][..], &data].concat();
                    if ws.send(Message::binary(frame)).await.is_err() {
                        return;
                    }
                }
            }
            outcome(&cmd, r.exit_code)
        }
        Err(e) => {
            json!({"metadata": {}, "status": "Failure", "message": e.message(), "reason": "InternalError"})
        }
    };
    let frame = [&[ERROR][..], end.to_string().as_bytes()].concat();
    let _ = ws.send(Message::binary(frame)).await;
    // A normal closure, which kubectl reads as the end of every stream
    // (without a code it takes the close for a broken connection).
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = ws.close(Some(normal)).await;
}

/// The `Status` the API server sends on the error channel when a command
/// ends: success, or the exit code in a cause, from which kubectl takes
/// its own exit code.
fn outcome(cmd: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            cmd.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}
