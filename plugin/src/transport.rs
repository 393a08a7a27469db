//! Reaching an agent: a unix socket or a TCP address.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::exit::Failure;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 settings for bulk output: large frames and windows, so 100 MB of
/// tcpdump output is not cut into 16 KiB frames and stalled on 64 KiB windows.
fn tuned(ep: Endpoint) -> Endpoint {
    ep.connect_timeout(CONNECT_TIMEOUT)
        .max_frame_size(1 << 20)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
}

/// Connects to `addr` (`unix:///PATH` or `http://HOST:PORT`).
pub async fn connect(addr: &str) -> Result<Channel, Failure> {
    let unreachable = |e: &dyn std::fmt::Display| {
        Failure::own(format!(
            "cannot reach the agent at {addr}: {e}\nHint: is kubectl-ns-agent running and listening there (its --listen)?"
        ))
    };
    if let Some(path) = addr.strip_prefix("unix://") {
        return tuned(kns_proto::unix_endpoint(path))
            .connect()
            .await
            .map_err(|e| unreachable(&source_chain(&e)));
    }
    if addr.starts_with("http://") {
        let ep = Endpoint::from_shared(addr.to_owned()).map_err(|e| {
            Failure::new(
                crate::exit::USAGE,
                format!("--agent {addr}: not a valid address: {e}"),
            )
        })?;
        return tuned(ep)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| unreachable(&source_chain(&e)));
    }
    Err(Failure::new(
        crate::exit::USAGE,
        format!("--agent {addr}: expected unix:///PATH or http://HOST:PORT"),
    ))
}

/// An error with its causes, `a: b: c`, since transport errors hide the
/// useful part (connection refused, no such file) in their sources.
pub fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Warns once when the agent that answered is another version than this
/// plugin: flags or behaviour may differ.
pub fn warn_version_skew(meta: &tonic::metadata::MetadataMap) {
    let mine = env!("CARGO_PKG_VERSION");
    if let Some(theirs) = meta
        .get(kns_proto::AGENT_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        && theirs != mine
    {
        eprintln!("kubectl-ns: warning: the agent is version {theirs}, this kubectl-ns is {mine}");
    }
}

/// Words a gRPC error from the agent for the user.
pub fn status_failure(s: &tonic::Status) -> Failure {
    let hint = match s.code() {
        tonic::Code::PermissionDenied => {
            "\nHint: the agent lacks the privilege for this; it needs hostPID and CAP_SYS_ADMIN/CAP_SYS_PTRACE on the node"
        }
        tonic::Code::Unavailable if s.message().contains("shutting down") => "",
        tonic::Code::Unavailable => "\nHint: the agent or the node's container runtime is not answering",
        tonic::Code::Unimplemented => "\nHint: the agent is older than this kubectl-ns; upgrade it",
        _ => "",
    };
    let msg = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    };
    Failure::own(format!("{msg}{hint}"))
}

/// A gRPC channel to `port` of pod `ns/pod`, through the API server's
/// port-forward (a WebSocket, v4.channel.k8s.io). The agent listens on the
/// pod's 127.0.0.1 only, so nothing but a port-forward reaches it.
pub async fn portforward(client: kube::Client, ns: &str, pod: &str, port: u16) -> Result<Channel, Failure> {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(client, ns);
    let mut pf = api.portforward(pod, &[port]).await.map_err(|e| {
        crate::resolve::api_failure(
            &format!("cannot open a port-forward to the agent pod {ns}/{pod}"),
            e,
        )
    })?;
    let stream = pf
        .take_stream(port)
        .ok_or_else(|| Failure::own("internal error: the port-forward has no stream"))?;
    if let Some(errors) = pf.take_error(port) {
        let pod = pod.to_owned();
        tokio::spawn(async move {
            if let Some(e) = errors.await {
                eprintln!("kubectl-ns: port-forward to {pod}: {e}");
            }
        });
    }
    tokio::spawn(async move {
        let _ = pf.join().await;
    });
    // gRPC wants a connector; the port-forward is one stream, used once.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(stream)));
    tuned(Endpoint::from_static("http://agent.invalid"))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let s = slot.lock().ok().and_then(|mut g| g.take());
            async move {
                s.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the port-forward stream was already used"))
            }
        }))
        .await
        .map_err(|e| {
            Failure::own(format!(
                "cannot reach the agent {ns}/{pod} through the port-forward: {}",
                source_chain(&e)
            ))
        })
}
