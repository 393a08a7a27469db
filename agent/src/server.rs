//! Listening: unix sockets and loopback TCP, with a graceful shutdown that
//! ends every session with a message first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use kns_proto::agent::agent_server::AgentServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

use crate::service::AgentService;

/// The largest message a client may send, in bytes: an exec start, or one
/// chunk of stdin. Bounds what one message can make the agent hold.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Where the agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if !p.starts_with('/') {
                return Err(format!(
                    "`{s}`: a unix socket needs an absolute path, as unix:///run/kns.sock"
                ));
            }
            return Ok(Listen::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            return a
                .parse()
                .map(Listen::Tcp)
                .map_err(|_| format!("`{s}`: expected tcp://IP:PORT, as tcp://127.0.0.1:7469"));
        }
        Err(format!("`{s}`: expected unix:///PATH or tcp://IP:PORT"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{listen} is in use: another agent serves it; stop that one first or listen elsewhere")]
    InUse { listen: String },
    #[error("the server on {listen} failed: {source}")]
    Serve {
        listen: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Binds every listener first (so a bad address fails before anything is
/// served), then serves until `shutdown` turns true. Sessions see the same
/// signal and end themselves; the servers then drain for up to 5 s.
/// `keepalive`: ping idle clients this often, and drop those that do not
/// answer within as long again.
pub async fn serve(
    listens: &[Listen],
    service: AgentService,
    shutdown: watch::Receiver<bool>,
    keepalive: Option<Duration>,
) -> Result<(), ServeError> {
    enum Bound {
        Unix(UnixListener, PathBuf),
        Tcp(TcpListener),
    }
    let mut bound = Vec::new();
    for l in listens {
        let bind_err = |source| ServeError::Bind {
            listen: l.to_string(),
            source,
        };
        match l {
            Listen::Unix(path) => {
                // A socket left by a previous run would make bind fail; one a
                // live agent still serves must not be taken from it.
                if std::fs::symlink_metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    if std::os::unix::net::UnixStream::connect(path).is_ok() {
                        return Err(ServeError::InUse {
                            listen: l.to_string(),
                        });
                    }
                    let _ = std::fs::remove_file(path);
                }
                let ul = UnixListener::bind(path).map_err(bind_err)?;
                // The socket is root on this node: root only.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
                bound.push((l.clone(), Bound::Unix(ul, path.clone())));
            }
            Listen::Tcp(addr) => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "listening on a non-loopback address: anyone who can reach it is root on this node");
                }
                let tl = TcpListener::bind(addr).await.map_err(bind_err)?;
                bound.push((l.clone(), Bound::Tcp(tl)));
            }
        }
    }
    // The standard gRPC health service, for readiness probes (`probe`).
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServer<AgentService>>().await;
    let mut tasks = Vec::new();
    for (l, b) in bound {
        // 1 MiB per message is plenty for a start message and stdin chunks
        // (the plugin sends 64 KiB), and bounds what one client can make
        // the agent hold.
        let svc = AgentServer::new(service.clone()).max_decoding_message_size(MAX_MESSAGE);
        let mut sd = shutdown.clone();
        let stop = async move {
            let _ = sd.wait_for(|s| *s).await;
        };
        let router = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20))
            .max_frame_size(Some(1 << 20))
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(keepalive)
            .add_service(health_svc.clone())
            .add_service(svc);
        tracing::info!(listen = %l, "serving");
        tasks.push(tokio::spawn(async move {
            let r = match b {
                Bound::Unix(ul, path) => {
                    let r = router
                        .serve_with_incoming_shutdown(UnixListenerStream::new(ul), stop)
                        .await;
                    let _ = std::fs::remove_file(path);
                    r
                }
                Bound::Tcp(tl) => {
                    // The builder's tcp_nodelay applies only to listeners it
                    // binds itself; without it, small replies wait ~40 ms
                    // for delayed ACKs (Nagle).
                    let incoming = tonic::transport::server::TcpIncoming::from(tl).with_nodelay(Some(true));
                    router.serve_with_incoming_shutdown(incoming, stop).await
                }
            };
            r.map_err(|source| ServeError::Serve {
                listen: l.to_string(),
                source,
            })
        }));
    }
    let mut sd = shutdown.clone();
    let _ = sd.wait_for(|s| *s).await;
    health.set_not_serving::<AgentServer<AgentService>>().await;
    let all = futures_join(tasks);
    match tokio::time::timeout(Duration::from_secs(5), all).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("sessions did not finish within 5 s of shutdown; exiting anyway");
            Ok(())
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Result<(), ServeError>>>) -> Result<(), ServeError> {
    for t in tasks {
        if let Ok(r) = t.await {
            r?;
        }
    }
    Ok(())
}

/// Asks the agent at `listen` whether it serves: the readiness probe.
pub async fn probe(listen: &Listen) -> Result<(), String> {
    use tonic::transport::Endpoint;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let ep = match listen {
        Listen::Unix(path) => kns_proto::unix_endpoint(path),
        Listen::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?,
    };
    let channel = ep
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("cannot reach the agent at {listen}: {e}"))?;
    let service = <AgentServer<AgentService> as tonic::server::NamedService>::NAME;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| format!("health check failed: {}", s.message()))?
        .into_inner();
    if resp.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(format!(
            "the agent at {listen} is not serving ({:?})",
            resp.status()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "unix:///run/a.sock".parse(),
            Ok(Listen::Unix("/run/a.sock".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:7469".parse(),
            Ok(Listen::Tcp("127.0.0.1:7469".parse().unwrap()))
        );
        for bad in ["unix://rel.sock", "tcp://localhost", "http://x"] {
            let e = bad.parse::<Listen>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
