//! An in-process fake of the Kubernetes API server, for the one part of
//! kubectl-ns that cannot run against a real component here.
//!
//! It speaks real HTTPS and JSON for the calls kubectl-ns makes (pods get
//! and list with label and field selectors, nodes get), `kubectl exec`'s
//! WebSocket exec (run with the runtime's CRI `ExecSync`), and the real
//! port-forward protocol: a WebSocket upgrade with subprotocol
//! `v4.channel.k8s.io`, two channels per port (data, error), each opened by
//! a frame carrying the port as two little-endian bytes, then binary frames
//! prefixed with their channel number. Forwarded ports are bridged to real
//! TCP listeners on 127.0.0.1 (a real agent). Response shapes follow the
//! Kubernetes API reference (`Pod`, `PodList`, `Node`, `Status`).
//!
//! For the agent it also answers TokenReview and SubjectAccessReview
//! (`authentication.k8s.io/v1`, `authorization.k8s.io/v1`), as the API
//! server does with its token authenticator and RBAC: tokens map to users,
//! and [`Grant`]s play RBAC bindings. Only the agent's own ServiceAccount
//! token may create reviews. A bearer token it does not know gets the 401
//! the API server sends, on any request.
//!
//! Reviews and error `Status` bodies have the shapes a real API server
//! (v1.32) answers with, recorded in `tests/fixtures/kube-v1.32/`: each
//! field present or absent as there, with the request's names in the
//! messages (`tests/kube_shapes.rs` holds the fake to them).
//!
//! This file holds the server (its state, the connection loop, the router
//! from a request's method and path to the function that answers it) and
//! the [`FakeApi`] handle tests drive. The rest is by concern: `responses`
//! (JSON bodies and `Status` failures), `rbac` (tokens to users, grants,
//! 403s, the review endpoints), `objects` (pods and nodes: reads,
//! selectors, the builders tests use), `apply` (server-side apply, the
//! DaemonSet rollout, watch, delete), `scheduler` (where a DaemonSet's
//! pods go), `discovery` (`/version`, `/api`, `/apis` for kubectl),
//! `portforward` (the WebSocket upgrade, the port-forward and its
//! bridge), `exec` (`pods/exec` through the CRI) and
//! `kubeconfigs` (kubeconfigs for other users and client certificates).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

mod apply;
mod discovery;
mod exec;
mod kubeconfigs;
mod objects;
mod portforward;
mod rbac;
mod responses;
mod scheduler;

pub use kubeconfigs::{CLIENT_CA_PATH, client_ca};
pub use objects::{agent_pod, kube_meta, running_pod};
pub use portforward::connect_in_netns;
pub use rbac::Grant;

use apply::{apply, delete, watch};
use discovery::{discovery, version};
use exec::exec;
use kubeconfigs::write_kubeconfig;
use objects::{get_node, get_pod, get_stored, is_pod, list_namespaces, list_nodes, list_pods, query};
use portforward::portforward;
use rbac::{caller, forbidden, installer_only, is_discovery, review, user_info};
use responses::unauthorized;

#[derive(Debug, Default)]
struct State {
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    /// (namespace, pod) → where that pod's forwarded port really listens.
    /// Pod -> a process in its network namespace (the pod's sandbox).
    forwards: HashMap<(String, String), i32>,
    /// Objects created by server-side apply, by their API path.
    objects: std::collections::BTreeMap<String, Value>,
    /// Every request line seen, for assertions.
    requests: Vec<String>,
    /// Added before answering each request, as a network hop would.
    latency: std::time::Duration,
    /// Requests waiting out the latency now, and the most seen at once:
    /// what shows a client sending requests side by side.
    waiting: u32,
    most_waiting: u32,
    /// The last resourceVersion handed out; watchers hear of each change.
    version: u64,
    changes: tokio::sync::watch::Sender<u64>,
    /// How the kubelets report agent pods that fail to start, if they do.
    agent_failure: Option<AgentFailure>,
    /// Requests that need more than the kubectl-ns-user roles get 403.
    user_only: bool,
    /// Users no RBAC binding names: all their requests but discovery get
    /// 403.
    rightless: std::collections::HashSet<String>,
    /// Bearer token → the user a TokenReview names.
    tokens: HashMap<String, Value>,
    /// Tokens that stop being valid when a TokenReview asks about them.
    expiring: std::collections::HashSet<String>,
    /// What SubjectAccessReviews allow.
    grants: Vec<Grant>,
    /// The container runtime's CRI, where `pods/exec` runs commands.
    cri: Option<tonic::transport::Channel>,
    /// Review bodies received, oldest first (kept apart from `requests`,
    /// which are the plugin's round trips).
    reviews: Vec<Value>,
}

/// A user's default token in the kubeconfig, and its user.
pub const USER_TOKEN: &str = "fake-token";
pub const USER: &str = "tester";
/// The agent's ServiceAccount token (its `--kube-token-file`) and user.
pub const AGENT_TOKEN: &str = "agent-sa-token";
pub const AGENT_USER: &str = "system:serviceaccount:kubectl-ns-system:kubectl-ns-agent";
/// Where, in an agent's network namespace, [`FakeApi::serve_in_netns`]
/// makes the API server reachable, as a Service IP is in a pod.
pub const IN_POD_PORT: u16 = 6443;

impl State {
    /// The state the server starts with: the default user's and the
    /// agent's tokens, a grant of everything to the default user (so tests
    /// about other things pass the agent's checks), and the client CA
    /// published as the API server publishes it at start, for extension
    /// servers to use.
    fn at_start(client_ca_pem: &str) -> State {
        let agent_groups = [
            "system:serviceaccounts",
            "system:serviceaccounts:kubectl-ns-system",
            "system:authenticated",
        ];
        let mut state = State {
            tokens: [
                (
                    USER_TOKEN.to_owned(),
                    user_info(USER_TOKEN, USER, &["system:authenticated"]),
                ),
                (
                    AGENT_TOKEN.to_owned(),
                    user_info(AGENT_TOKEN, AGENT_USER, &agent_groups),
                ),
            ]
            .into(),
            grants: vec![Grant::new(USER, "*", "*", "*")],
            ..Default::default()
        };
        state.objects.insert(
            CLIENT_CA_PATH.to_owned(),
            json!({
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system", "resourceVersion": "1"},
                "data": {"client-ca-file": client_ca_pem},
            }),
        );
        state
    }

    /// A new resourceVersion, announced to watchers.
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.changes.send_replace(self.version);
        self.version
    }
}

/// An agent container that cannot start, as a kubelet reports it: waiting
/// (in CrashLoopBackOff after terminations with `last_message`, or in
/// ImagePullBackOff, never started, when `last_reason` is empty).
#[derive(Debug, Clone)]
pub struct AgentFailure {
    /// The container's waiting reason (CrashLoopBackOff, ImagePullBackOff).
    pub waiting_reason: String,
    pub waiting_message: String,
    pub last_reason: String,
    pub last_message: String,
}

/// A running fake API server; stopped on drop.
#[derive(Debug)]
pub struct FakeApi {
    pub addr: SocketAddr,
    /// A kubeconfig that trusts the server's certificate, context `fake`,
    /// default namespace `default`.
    pub kubeconfig: PathBuf,
    state: Arc<Mutex<State>>,
    forbid_portforward: Arc<AtomicBool>,
    /// Signs client certificates, as the cluster's client CA does.
    client_ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Serves the connections; dropping it stops the server.
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// Response bodies: whole JSON documents, or a watch's event stream.
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

async fn serve(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    forbid: Arc<AtomicBool>,
) -> Result<Response<Body>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let q = query(&req);
    if req.method() == hyper::Method::GET && q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let mut st = state.lock().expect("state");
        st.requests.push(format!("GET {}", req.uri()));
        if caller(&req, &st).is_none() {
            return Ok(unauthorized().map(BodyExt::boxed_unsync));
        }
        drop(st);
        return Ok(watch(state, req.uri().path().to_owned(), &q));
    }
    handle(req, state, forbid)
        .await
        .map(|r| r.map(BodyExt::boxed_unsync))
}

/// Routes a request to the function that answers it, after what the API
/// server does first for every request but a review: record it, wait out
/// the latency, authenticate and authorize it ([`admit`]).
async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    forbid: Arc<AtomicBool>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() == hyper::Method::POST
        && let Some(kind) = review_kind(&path)
    {
        return Ok(review(req, &state, kind).await);
    }
    let content_type = header(&req, "content-type");
    let user = match admit(&req, &state, &path, &content_type).await {
        Ok(user) => user,
        Err(refusal) => return Ok(refusal),
    };
    if req.method() == hyper::Method::PATCH {
        let body = body_bytes(req).await;
        return Ok(apply(&state, &path, &content_type, &body));
    }
    if req.method() == hyper::Method::DELETE {
        return Ok(delete(&state, &path));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match parts.as_slice() {
        ["version"] => version(),
        ["api"] => discovery(true),
        ["apis"] => discovery(false),
        ["api", "v1", "nodes"] => list_nodes(&state),
        ["api", "v1", "namespaces"] => list_namespaces(&state),
        ["api", "v1", "nodes", name] => get_node(&state, name),
        // Pods of every namespace (`-A`), or of one.
        ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"] => {
            list_pods(&state, parts.get(3).copied(), &query(&req))
        }
        ["api", "v1", "namespaces", ns, "pods", name] => get_pod(&state, ns, name),
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
            portforward(req, &state, &forbid, &user, ns, name).await
        }
        ["api", "v1", "namespaces", ns, "pods", name, "exec"] => exec(req, &state, &user, ns, name),
        _ => get_stored(&state, &path),
    };
    Ok(resp)
}

/// The review kind a POST to `path` creates, if it is a review endpoint.
fn review_kind(path: &str) -> Option<&'static str> {
    match path {
        "/apis/authentication.k8s.io/v1/tokenreviews" => Some("TokenReview"),
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => Some("SubjectAccessReview"),
        _ => None,
    }
}

/// A request header as text (empty when absent or not text).
fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Records the request, waits out the latency, and names its user; or the
/// 401 for an unknown token, or RBAC's 403 for a user without the rights.
async fn admit(
    req: &Request<Incoming>,
    state: &Mutex<State>,
    path: &str,
    content_type: &str,
) -> Result<String, Response<Full<Bytes>>> {
    let (latency, user) = {
        let mut st = state.lock().expect("state");
        st.requests.push(
            format!("{} {} {content_type}", req.method(), req.uri())
                .trim_end()
                .to_owned(),
        );
        (st.latency, caller(req, &st))
    };
    if !latency.is_zero() {
        let at_once = |st: &mut State, n: i32| {
            st.waiting = st.waiting.saturating_add_signed(n);
            st.most_waiting = st.most_waiting.max(st.waiting);
        };
        at_once(&mut state.lock().expect("state"), 1);
        tokio::time::sleep(latency).await;
        at_once(&mut state.lock().expect("state"), -1);
    }
    let Some(user) = user else {
        return Err(unauthorized());
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let refused = {
        let st = state.lock().expect("state");
        (st.rightless.contains(&user) && !is_discovery(&parts))
            || (st.user_only && installer_only(req.method(), &parts))
    };
    if refused {
        return Err(forbidden(&user, req.method(), &parts));
    }
    Ok(user)
}

/// A request's whole body (empty if it broke off).
async fn body_bytes(req: Request<Incoming>) -> Bytes {
    use http_body_util::BodyExt;
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// A TLS acceptor with a fresh self-signed certificate for 127.0.0.1 and
/// localhost (HTTP/1.1 only), and that certificate in PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .expect("tls config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert.cert.pem())
}

/// Accepts connections until the runtime stops: TLS, then HTTP/1.1 with
/// upgrades (for port-forwards), each request to [`serve`].
async fn accept(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
    forbid: Arc<AtomicBool>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let (acceptor, st, fb) = (acceptor.clone(), state.clone(), forbid.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| serve(req, st.clone(), fb.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}

impl FakeApi {
    /// Starts the server on 127.0.0.1 with a fresh self-signed certificate.
    pub fn start() -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (acceptor, cert_pem) = tls_acceptor();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client_ca, client_ca_pem) = client_ca();
        let state = Arc::new(Mutex::new(State::at_start(&client_ca_pem)));
        let forbid = Arc::new(AtomicBool::new(false));
        rt.spawn(accept(listener, acceptor, state.clone(), forbid.clone()));
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(dir.path().join("ca.crt"), &cert_pem).expect("ca.crt");
        std::fs::write(dir.path().join("agent-token"), AGENT_TOKEN).expect("agent token");
        write_kubeconfig(&kubeconfig, addr, &cert_pem);
        FakeApi {
            addr,
            kubeconfig,
            state,
            forbid_portforward: forbid,
            client_ca,
            _rt: rt,
            _dir: dir,
        }
    }

    /// The environment that points an agent at this server, as a pod's
    /// Service address and ServiceAccount mount would, on node `node`
    /// (reachable once [`FakeApi::serve_in_netns`] runs for the agent).
    pub fn agent_env(&self, node: &str) -> Vec<(String, String)> {
        [
            ("KNS_KUBE_API", format!("https://127.0.0.1:{IN_POD_PORT}")),
            ("KNS_KUBE_CA", self.ca_path().display().to_string()),
            (
                "KNS_KUBE_TOKEN_FILE",
                self.agent_token_path().display().to_string(),
            ),
            ("NODE_NAME", node.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into()
    }

    /// The server's CA bundle, for an agent's `--kube-ca`.
    pub fn ca_path(&self) -> PathBuf {
        self._dir.path().join("ca.crt")
    }

    /// The agent's own token, for its `--kube-token-file`.
    pub fn agent_token_path(&self) -> PathBuf {
        self._dir.path().join("agent-token")
    }

    /// The files of the agent's ServiceAccount mount (token, ca.crt,
    /// namespace), as the kubelet writes them for a pod; with
    /// [`FakeApi::serve_in_netns`] the pod reaches this server.
    pub fn service_account_dir(&self) -> PathBuf {
        let dir = self._dir.path().join("serviceaccount");
        std::fs::create_dir_all(&dir).expect("serviceaccount dir");
        std::fs::copy(self._dir.path().join("ca.crt"), dir.join("ca.crt")).expect("ca.crt");
        std::fs::write(dir.join("token"), AGENT_TOKEN).expect("token");
        std::fs::write(dir.join("namespace"), "kubectl-ns-system").expect("namespace");
        dir
    }

    /// Makes this server reachable at 127.0.0.1:[`IN_POD_PORT`] inside the
    /// network namespace of process `pid` (an agent's pod), relaying bytes
    /// as a Service's proxy would; TLS stays end to end.
    pub fn serve_in_netns(&self, pid: i32) {
        let listener = std::thread::spawn(move || -> std::io::Result<std::net::TcpListener> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let l = std::net::TcpListener::bind(("127.0.0.1", IN_POD_PORT))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .join()
        .expect("netns thread")
        .unwrap_or_else(|e| panic!("cannot listen in the network namespace of {pid}: {e}"));
        let upstream = self.addr;
        let _guard = self._rt.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        self._rt.spawn(async move {
            while let Ok((mut inner, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outer) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inner, &mut outer).await;
                    }
                });
            }
        });
    }

    pub fn add_pod(&self, pod: Pod) {
        self.state.lock().expect("state").pods.push(pod);
    }

    /// A Ready linux/amd64 node, as a kubelet registers it.
    pub fn add_node(&self, name: &str) {
        self.add_node_with(name, "linux", "amd64", true);
    }

    /// A node with the kubelet's OS and architecture labels, and a Ready
    /// condition that is True, or Unknown as when its kubelet stopped
    /// posting status.
    pub fn add_node_with(&self, name: &str, os: &str, arch: &str, ready: bool) {
        use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
        let mut metadata = kube_meta(name, None);
        metadata.labels = Some(
            [
                ("kubernetes.io/hostname", name),
                ("kubernetes.io/os", os),
                ("kubernetes.io/arch", arch),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        let (status, reason, message) = if ready {
            ("True", "KubeletReady", "kubelet is posting ready status")
        } else {
            (
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        };
        let node = Node {
            metadata,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.state.lock().expect("state").nodes.push(node);
    }

    /// A namespace that exists before kubectl-ns is installed.
    pub fn add_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let mut st = self.state.lock().expect("state");
        let rv = st.bump().to_string();
        let labels: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        st.objects.insert(
            format!("/api/v1/namespaces/{name}"),
            json!({
                "kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": name, "uid": format!("{name}-uid"), "resourceVersion": rv, "labels": labels},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
            }),
        );
    }

    /// Agent pods the DaemonSet creates from now on fail to start.
    pub fn fail_agents(&self, failure: AgentFailure) {
        self.state.lock().expect("state").agent_failure = Some(failure);
    }

    /// Port-forwards to pod `ns/name` reach the requested port on the
    /// loopback of the network namespace process `pid` is in: the pod's.
    pub fn forward(&self, ns: &str, name: &str, pid: i32) {
        self.state
            .lock()
            .expect("state")
            .forwards
            .insert((ns.to_owned(), name.to_owned()), pid);
    }

    /// Runs the commands of `pods/exec` requests in the containers of the
    /// runtime whose CRI listens on `socket` (a [`crate::containerd::Lab`]'s),
    /// as the pods' kubelet would ask it.
    pub fn exec_with(&self, socket: &std::path::Path) {
        // The channel's connection task runs on the server's runtime.
        let _guard = self._rt.enter();
        self.state.lock().expect("state").cri = Some(crate::containerd::channel(socket));
    }

    /// Makes port-forward requests fail with 403, as without RBAC.
    pub fn forbid_portforward(&self, on: bool) {
        self.forbid_portforward.store(on, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("state").requests.clone()
    }

    /// The requests seen since the last call (or the start), forgetting
    /// them: each is one round trip to the API server.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().expect("state").requests)
    }

    /// Delays the answer to every request from now on, the port-forward
    /// upgrade included, by `latency`: the round trip to a remote API
    /// server.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.lock().expect("state").latency = latency;
    }

    /// The most requests that waited out the latency at the same time
    /// since the last call (0 without latency).
    pub fn take_most_at_once(&self) -> u32 {
        std::mem::take(&mut self.state.lock().expect("state").most_waiting)
    }

    /// Removes pod `ns/name`, as when its controller replaced it.
    pub fn remove_pod(&self, ns: &str, name: &str) -> Option<Pod> {
        let mut st = self.state.lock().expect("state");
        let i = st.pods.iter().position(|p| is_pod(p, ns, name))?;
        Some(st.pods.remove(i))
    }

    /// A kubectl cache directory (`$KUBECACHEDIR`) that lives as long as
    /// this server, so no test reads what another left in ~/.kube/cache.
    pub fn cache_dir(&self) -> PathBuf {
        self._dir.path().join("cache")
    }

    /// `kubectl-ns SUBCOMMAND --kubeconfig <this server's> ARGS…`, with the
    /// kubectl cache in [`FakeApi::cache_dir`]; add env or stdio and run it.
    pub fn kns_command(&self, args: &[&str]) -> std::process::Command {
        self.kns_command_as(&self.kubeconfig, args)
    }

    /// [`FakeApi::kns_command`] as the user of `kubeconfig` (one of
    /// [`FakeApi::kubeconfig_for`]'s, say).
    pub fn kns_command_as(&self, kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(crate::bins::plugin());
        c.arg(args[0])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(&args[1..])
            .env("KUBECACHEDIR", self.cache_dir())
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs [`FakeApi::kns_command`] to completion.
    pub fn kns(&self, args: &[&str]) -> std::process::Output {
        self.kns_command(args).output().expect("run kubectl-ns")
    }
}
