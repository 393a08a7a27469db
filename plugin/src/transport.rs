//! Reaching an agent: a unix socket or a TCP address.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::{Channel, Endpoint, Uri};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong on the way to an agent; worded for the user by
/// `exit`'s `From<TransportError> for Failure`.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("--agent {addr}: expected unix:///PATH or tcp://HOST:PORT (also http://HOST:PORT)")]
    BadAddress { addr: String },
    #[error("--agent {addr}: not a valid address")]
    InvalidAddress {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot reach the agent at {addr}")]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The API server refused or failed the port-forward request.
    #[error("{what}")]
    Forward {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The port-forward opened, but nothing answered on the agent's port.
    #[error("the port-forward to the agent pod {ns}/{pod} reached nothing on port {port}: {reason}")]
    NoAnswer {
        ns: String,
        pod: String,
        port: u16,
        reason: String,
    },
    #[error("cannot reach the agent {ns}/{pod} through the port-forward")]
    Handshake {
        ns: String,
        pod: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl TransportError {
    /// Whether the agent pod named is gone or not serving, so that a fresh
    /// lookup of the node's agent may find a better one.
    pub fn agent_gone(&self) -> bool {
        match self {
            TransportError::Forward {
                source: kube::Error::Api(s),
                ..
            } => s.code == 404,
            TransportError::NoAnswer { .. } => true,
            _ => false,
        }
    }
}

/// HTTP/2 settings for bulk output: large frames and windows, so 100 MB of
/// tcpdump output is not cut into 16 KiB frames and stalled on 64 KiB windows.
fn tuned(ep: Endpoint) -> Endpoint {
    ep.connect_timeout(CONNECT_TIMEOUT)
        .max_frame_size(1 << 20)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
}

/// Connects to `addr` (`unix:///PATH`, or `tcp://HOST:PORT` as the agent's
/// `--listen` writes it, or `http://HOST:PORT`).
pub async fn connect(addr: &str) -> Result<Channel, TransportError> {
    let unreachable = |source| TransportError::Unreachable {
        addr: addr.to_owned(),
        source,
    };
    if let Some(path) = addr.strip_prefix("unix://") {
        return tuned(kns_proto::unix_endpoint(path))
            .connect()
            .await
            .map_err(unreachable);
    }
    if let Some(hostport) = addr
        .strip_prefix("tcp://")
        .or_else(|| addr.strip_prefix("http://"))
    {
        let ep = Endpoint::from_shared(format!("http://{hostport}")).map_err(|source| {
            TransportError::InvalidAddress {
                addr: addr.to_owned(),
                source,
            }
        })?;
        return tuned(ep).tcp_nodelay(true).connect().await.map_err(unreachable);
    }
    Err(TransportError::BadAddress {
        addr: addr.to_owned(),
    })
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

/// A gRPC channel to `port` of pod `ns/pod`, through the API server's
/// port-forward (a WebSocket, v4.channel.k8s.io). The agent listens on the
/// pod's 127.0.0.1 only, so nothing but a port-forward reaches it.
pub async fn portforward(
    client: kube::Client,
    ns: &str,
    pod: &str,
    port: u16,
) -> Result<Channel, TransportError> {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(client, ns);
    let mut pf = api
        .portforward(pod, &[port])
        .await
        .map_err(|source| TransportError::Forward {
            what: format!("cannot open a port-forward to the agent pod {ns}/{pod}"),
            source,
        })?;
    let no_answer = |reason: String| TransportError::NoAnswer {
        ns: ns.to_owned(),
        pod: pod.to_owned(),
        port,
        reason,
    };
    let stream = pf
        .take_stream(port)
        .ok_or_else(|| no_answer("the port-forward has no stream for it".into()))?;
    let errors = pf.take_error(port);
    tokio::spawn(async move {
        let _ = pf.join().await;
    });
    // The 101 only says the API server accepted the request; whether the
    // kubelet reached a listening agent shows in the first bytes: the
    // agent's HTTP/2 server speaks first (its SETTINGS frame) as soon as the
    // forwarded connection is accepted, so waiting for them costs no extra
    // round trip. A closed stream means nothing listens (the error channel
    // says why); a small buffer keeps bulk reads bypassing it.
    let mut stream = BufReader::with_capacity(64, stream);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, stream.fill_buf()).await;
    let failed = match first {
        Ok(Ok(b)) if !b.is_empty() => None,
        Ok(Ok(_)) => Some("the connection was closed".to_owned()),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    };
    if let Some(failed) = failed {
        // The error channel's message comes just before the close.
        let said = match errors {
            Some(errors) => tokio::time::timeout(Duration::from_millis(500), errors)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        return Err(no_answer(said.unwrap_or(failed)));
    }
    if let Some(errors) = errors {
        let pod = pod.to_owned();
        tokio::spawn(async move {
            if let Some(e) = errors.await {
                eprintln!("kubectl-ns: port-forward to {pod}: {e}");
            }
        });
    }
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
        .map_err(|source| TransportError::Handshake {
            ns: ns.to_owned(),
            pod: pod.to_owned(),
            source,
        })
}
