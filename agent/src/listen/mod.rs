//! Listening: unix sockets, loopback TCP, and loopback TLS for callers
//! with client certificates; with a graceful shutdown that ends every
//! session with a message first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kns_proto::agent::agent_server::AgentServer;
use kns_proto::agent::sessions_server::SessionsServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

use crate::access::clientcert::{CertConn, ClientCerts};
use crate::rpc::service::AgentService;

/// TLS handshakes in progress at most; each ends within
/// [`crate::access::clientcert::HANDSHAKE_TIMEOUT`].
const MAX_HANDSHAKES: usize = 256;

/// Where the agent listens unless told: a unix socket only root can
/// connect to. Reaching the agent is root on the node, so it listens on
/// nothing wider unless asked (the DaemonSet asks for its pod's loopback).
pub const DEFAULT_LISTEN: &str = "unix:///run/kubectl-ns/agent.sock";

/// Where the agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// TLS whose clients authenticate with a certificate (`clientcert`).
    Tls(SocketAddr),
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
        if let Some(a) = s.strip_prefix("tls://") {
            return a
                .parse()
                .map(Listen::Tls)
                .map_err(|_| format!("`{s}`: expected tls://IP:PORT, as tls://127.0.0.1:7470"));
        }
        Err(format!(
            "`{s}`: expected unix:///PATH, tcp://IP:PORT or tls://IP:PORT"
        ))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
            Listen::Tls(a) => write!(f, "tls://{a}"),
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
/// answer within as long again. `certs` accepts the TLS listeners' clients.
pub async fn serve(
    listens: &[Listen],
    service: AgentService,
    shutdown: watch::Receiver<bool>,
    keepalive: Option<Duration>,
    certs: Arc<ClientCerts>,
) -> Result<(), ServeError> {
    let mut bound = Vec::new();
    for l in listens {
        bound.push((l.clone(), bind(l).await?));
    }
    // The standard gRPC health service, for readiness probes (`probe`).
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServer<AgentService>>().await;
    let mut tasks = Vec::new();
    for (l, b) in bound {
        // 1 MiB per message is plenty for a start message and stdin chunks
        // (the plugin sends 64 KiB), and bounds what one client can make
        // the agent hold.
        let svc = AgentServer::new(service.clone()).max_decoding_message_size(kns_proto::MAX_MESSAGE);
        let router = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20))
            .max_frame_size(Some(1 << 20))
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(keepalive)
            .add_service(health_svc.clone())
            .add_service(svc)
            .add_service(SessionsServer::new(service.clone()));
        tracing::info!(listen = %l, "serving");
        tasks.push(tokio::spawn(serve_one(
            l,
            b,
            router,
            shutdown.clone(),
            certs.clone(),
        )));
    }
    let mut sd = shutdown.clone();
    let _ = sd.wait_for(|s| *s).await;
    health.set_not_serving::<AgentServer<AgentService>>().await;
    let all = wait_all(tasks);
    match tokio::time::timeout(Duration::from_secs(5), all).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("sessions did not finish within 5 s of shutdown; exiting anyway");
            Ok(())
        }
    }
}

/// A bound listener, not yet served.
enum Bound {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
    Tls(TcpListener),
}

/// Binds one listener: a unix socket (taking over one a previous run left,
/// never one a live agent serves), or a TCP port for plain or TLS callers.
async fn bind(l: &Listen) -> Result<Bound, ServeError> {
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
            let ul = bind_private(path).map_err(bind_err)?;
            Ok(Bound::Unix(ul, path.clone()))
        }
        Listen::Tcp(addr) | Listen::Tls(addr) => {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "listening on a non-loopback address: callers are still checked, but the port-forward's RBAC no longer limits who can try (and with --insecure-skip-authz, anyone who reaches it is root on this node)");
            }
            let tl = TcpListener::bind(addr).await.map_err(bind_err)?;
            Ok(if matches!(l, Listen::Tls(_)) {
                Bound::Tls(tl)
            } else {
                Bound::Tcp(tl)
            })
        }
    }
}

/// Serves one bound listener until `shutdown` turns true; a unix socket is
/// removed when its server ends.
async fn serve_one(
    l: Listen,
    b: Bound,
    router: tonic::transport::server::Router,
    mut shutdown: watch::Receiver<bool>,
    certs: Arc<ClientCerts>,
) -> Result<(), ServeError> {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let r = match b {
        Bound::Unix(ul, path) => {
            let r = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(ul), stop)
                .await;
            let _ = std::fs::remove_file(path);
            r
        }
        Bound::Tcp(tl) => {
            // The builder's tcp_nodelay applies only to listeners it binds
            // itself; without it, small replies wait ~40 ms for delayed
            // ACKs (Nagle).
            let incoming = tonic::transport::server::TcpIncoming::from(tl).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, stop).await
        }
        Bound::Tls(tl) => {
            router
                .serve_with_incoming_shutdown(tls_incoming(tl, certs), stop)
                .await
        }
    };
    r.map_err(|source| ServeError::Serve {
        listen: l.to_string(),
        source,
    })
}

/// Binds a unix socket only root can connect to, which at no moment exists
/// with the permissions the umask gives a new socket: it is bound in a
/// directory only its owner can enter and made 0600 there. A missing
/// directory is created 0700; in one others can enter (/run, /tmp) the
/// socket is bound in a private directory made next to it, then renamed
/// into place (connecting follows the inode, so the listener keeps
/// serving at the new name).
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // The umask may have taken bits from 0700; the owner needs all.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let shared = std::fs::metadata(dir)?.mode() & 0o077 != 0;
    let staging = shared.then(|| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        dir.join(format!(".{name}.{}.tmp", std::process::id()))
    });
    if let Some(s) = &staging {
        std::fs::DirBuilder::new().mode(0o700).create(s)?;
    }
    let at = staging
        .as_ref()
        .map_or_else(|| path.to_owned(), |s| s.join("agent.sock"));
    let bound = UnixListener::bind(&at).and_then(|ul| {
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o600))?;
        if staging.is_some() {
            std::fs::rename(&at, path)?;
        }
        Ok(ul)
    });
    if let Some(s) = &staging {
        let _ = std::fs::remove_file(&at);
        let _ = std::fs::remove_dir(s);
    }
    bound
}

/// The TLS listener's connections, each handshake on a task of its own so
/// that a slow or silent client holds up nobody else; failed handshakes are
/// logged and dropped.
fn tls_incoming(
    tl: TcpListener,
    certs: Arc<ClientCerts>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<CertConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                // The server stopped taking connections.
                _ = tx.closed() => break,
                accepted = tl.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Whoever may port-forward to the agent pod can open
            // connections, with or without a right to use them: only so
            // many handshakes at once, the rest closed.
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(
                    max = MAX_HANDSHAKES,
                    "TLS listener: too many handshakes at once; closing a connection"
                );
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (certs, conns) = (certs.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match certs.accept(tcp).await {
                    Ok(conn) => {
                        let _ = conns.send(Ok(conn)).await;
                    }
                    Err(e) => tracing::info!(error = %e, "TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Waits for the server tasks one after the other (spawned, they all run
/// meanwhile); the first that failed ends the wait with its error.
async fn wait_all(tasks: Vec<tokio::task::JoinHandle<Result<(), ServeError>>>) -> Result<(), ServeError> {
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
        Listen::Tls(_) => {
            return Err(format!(
                "{listen}: the probe asks a unix or tcp listener; list one first"
            ));
        }
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

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// The default's shape: a directory the agent makes, 0700, holding a
    /// 0600 socket; whatever the umask (0 here, the worst: it would leave
    /// a bare bind's socket connectable by anyone).
    #[tokio::test]
    async fn a_unix_socket_is_root_only_from_its_first_moment() {
        assert!(DEFAULT_LISTEN.parse::<Listen>().is_ok());
        let tmp = tempfile::tempdir().unwrap();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let made = tmp.path().join("kubectl-ns/agent.sock");
        let in_made = bind_private(&made);
        // A shared directory, as /run is: staged, then renamed into place.
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        let shared = tmp.path().join("kns.sock");
        let in_shared = bind_private(&shared);
        nix::sys::stat::umask(old);
        let (_a, _b) = (in_made.unwrap(), in_shared.unwrap());
        assert_eq!(mode(made.parent().unwrap()), 0o700);
        assert_eq!(mode(&made) & 0o777, 0o600);
        assert_eq!(mode(&shared) & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&shared).expect("the renamed socket still serves");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "staging directory left behind: {left:?}");
    }

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
        assert_eq!(
            "tls://127.0.0.1:7470".parse(),
            Ok(Listen::Tls("127.0.0.1:7470".parse().unwrap()))
        );
        for bad in [
            "unix://rel.sock",
            "tcp://localhost",
            "tls://localhost",
            "http://x",
        ] {
            let e = bad.parse::<Listen>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
