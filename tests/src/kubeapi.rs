//! An in-process fake of the Kubernetes API server, for the one part of
//! kubectl-ns that cannot run against a real component here.
//!
//! It speaks real HTTPS and JSON for the calls kubectl-ns makes (pods get
//! and list with label and field selectors, nodes get) and the real
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

mod scheduler;

const PORTFORWARD_PROTOCOL: &str = "v4.channel.k8s.io";

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
    /// The last resourceVersion handed out; watchers hear of each change.
    version: u64,
    changes: tokio::sync::watch::Sender<u64>,
    /// How the kubelets report agent pods that fail to start, if they do.
    agent_failure: Option<AgentFailure>,
    /// Requests that need more than the kubectl-ns-user roles get 403.
    user_only: bool,
    /// Users no RBAC binding names: all their requests get 403.
    rightless: std::collections::HashSet<String>,
    /// Bearer token → the user a TokenReview names.
    tokens: HashMap<String, Value>,
    /// Tokens that stop being valid when a TokenReview asks about them.
    expiring: std::collections::HashSet<String>,
    /// What SubjectAccessReviews allow.
    grants: Vec<Grant>,
    /// Review bodies received, oldest first (kept apart from `requests`,
    /// which are the plugin's round trips).
    reviews: Vec<Value>,
}

/// Where the API server publishes its client CA.
pub const CLIENT_CA_PATH: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";

/// A CA for client certificates, and its certificate in PEM.
pub fn client_ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes-client-ca");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).expect("CA").pem();
    (rcgen::Issuer::new(params, key), pem)
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

/// An RBAC rule bound to a user or group (`group:NAME`): `verb` on
/// `resource` (`pods/exec` for a subresource) in API `group`, in
/// `namespace` (`None`: a ClusterRoleBinding, everywhere), on `name`
/// (`None`: any). `*` matches anything, as in RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Grant {
    /// `verb resource` in API group `group` for `subject`, everywhere.
    pub fn new(subject: &str, verb: &str, group: &str, resource: &str) -> Grant {
        Grant {
            subject: subject.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: None,
            name: None,
        }
    }

    /// Only in `namespace`, as a RoleBinding grants.
    pub fn in_namespace(mut self, namespace: &str) -> Grant {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only on the object `name` (`resourceNames`).
    pub fn named(mut self, name: &str) -> Grant {
        self.name = Some(name.into());
        self
    }

    /// Whether this grant allows `user` (in `groups`) the request in a
    /// SubjectAccessReview's `resourceAttributes`.
    fn allows(&self, user: &str, groups: &[String], attrs: &Value) -> bool {
        let field = |k: &str| attrs.get(k).and_then(Value::as_str).unwrap_or("");
        let wild = |mine: &str, theirs: &str| mine == "*" || mine == theirs;
        let subject = match self.subject.strip_prefix("group:") {
            Some(g) => groups.iter().any(|x| x == g),
            None => self.subject == user,
        };
        let resource = match field("subresource") {
            "" => field("resource").to_owned(),
            sub => format!("{}/{sub}", field("resource")),
        };
        subject
            && wild(&self.verb, field("verb"))
            && wild(&self.group, field("group"))
            && wild(&self.resource, &resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == field("namespace"))
            && self.name.as_deref().is_none_or(|n| n == field("name"))
    }
}

impl State {
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

fn json_response(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// A `metav1.Status` failure, as the API server sends with 4xx codes.
fn status(code: StatusCode, reason: &str, message: String) -> Response<Full<Bytes>> {
    json_response(code, &status_body(code, reason, message))
}

fn status_body(code: StatusCode, reason: &str, message: String) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    })
}

/// The API server's answer to a request with a bearer token it does not
/// know (an expired one, say).
fn unauthorized() -> Response<Full<Bytes>> {
    status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into())
}

/// The object a NotFound or Forbidden answer is about, as the API server
/// names it: a resource (plural) of an API group, and the object's name
/// (empty for a collection).
struct About<'a> {
    group: &'a str,
    resource: &'a str,
    name: &'a str,
}

impl About<'_> {
    /// A failure about this object: `details` names it (with the resource
    /// as its `kind`), leaving out what is empty, as `omitempty` does.
    fn status(&self, code: StatusCode, reason: &str, message: String) -> Response<Full<Bytes>> {
        let mut body = status_body(code, reason, message);
        let details: serde_json::Map<String, Value> = [
            ("name", self.name),
            ("group", self.group),
            ("kind", self.resource),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
        body["details"] = details.into();
        json_response(code, &body)
    }

    /// `pods "web"`, `tokenreviews.authentication.k8s.io`: how the API
    /// server's messages name it.
    fn named(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        if self.name.is_empty() {
            resource
        } else {
            format!("{resource} \"{}\"", self.name)
        }
    }

    fn not_found(&self) -> Response<Full<Bytes>> {
        self.status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} not found", self.named()),
        )
    }

    /// RBAC's refusal of `verb` on this object (on its `subresource`, if
    /// not empty) to `user`, in `namespace` or at the cluster scope.
    fn forbidden(
        &self,
        user: &str,
        verb: &str,
        subresource: &str,
        namespace: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let resource = if subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{subresource}", self.resource)
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        self.status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                self.named(),
                self.group
            ),
        )
    }
}

/// The user a request's bearer token names; `None` for a token the API
/// server does not know, which it answers with [`unauthorized`]. A request
/// without a token is anonymous (the fake does not see client
/// certificates, which the plugin presents to agents only).
fn caller(req: &Request<Incoming>, state: &State) -> Option<String> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None => Some("system:anonymous".to_owned()),
        Some(t) => state
            .tokens
            .get(t)
            .and_then(|u| u["username"].as_str().map(str::to_owned)),
    }
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
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

fn percent_decode(s: &str) -> String {
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

/// Whether a path is one that only an installer (cluster-admin) may touch:
/// everything but pods, nodes and port-forwards.
fn installer_only(method: &hyper::Method, parts: &[&str]) -> bool {
    let reads_pods_or_nodes = matches!(
        parts,
        ["api", "v1", "nodes", ..] | ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods", ..]
    );
    !reads_pods_or_nodes || method != hyper::Method::GET
}

/// The API server's 403 to `user` for `path`, worded as RBAC words it.
fn forbidden(user: &str, method: &hyper::Method, parts: &[&str]) -> Response<Full<Bytes>> {
    let (group, rest) = match parts {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => ("", parts),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, rest @ ..] => (Some(*ns), [&[*r][..], rest].concat()),
        _ => (None, rest.to_vec()),
    };
    let about = About {
        group,
        resource: rest.first().copied().unwrap_or(""),
        name: rest.get(1).copied().unwrap_or(""),
    };
    let verb = match *method {
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        hyper::Method::POST => "create",
        // A port-forward's WebSocket upgrade is a GET, which the API server
        // authorizes as the POST it stands for.
        _ if rest.get(2) == Some(&"portforward") => "create",
        _ if about.name.is_empty() => "list",
        _ => "get",
    };
    about.forbidden(user, verb, rest.get(2).copied().unwrap_or(""), namespace)
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    forbid: Arc<AtomicBool>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if req.method() == hyper::Method::POST
        && let Some(kind) = match path.as_str() {
            "/apis/authentication.k8s.io/v1/tokenreviews" => Some("TokenReview"),
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => Some("SubjectAccessReview"),
            _ => None,
        }
    {
        return Ok(review(req, &state, kind).await);
    }
    let (latency, user) = {
        let mut st = state.lock().expect("state");
        st.requests.push(
            format!("{} {} {content_type}", req.method(), req.uri())
                .trim_end()
                .to_owned(),
        );
        (st.latency, caller(&req, &st))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(user) = user else {
        return Ok(unauthorized());
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let refused = {
        let st = state.lock().expect("state");
        st.rightless.contains(&user) || (st.user_only && installer_only(req.method(), &parts))
    };
    if refused {
        return Ok(forbidden(&user, req.method(), &parts));
    }
    if req.method() == hyper::Method::PATCH {
        let body = body_bytes(req).await;
        return Ok(apply(&state, &path, &content_type, &body));
    }
    if req.method() == hyper::Method::DELETE {
        return Ok(delete(&state, &path));
    }
    let resp = match parts.as_slice() {
        ["api", "v1", "nodes"] => {
            let st = state.lock().expect("state");
            let items: Vec<Value> = st
                .nodes
                .iter()
                .map(|n| serde_json::to_value(n).expect("node json"))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ["api", "v1", "namespaces"] => {
            let st = state.lock().expect("state");
            let items: Vec<&Value> = st
                .objects
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix("/api/v1/namespaces/")
                        .is_some_and(|n| !n.contains('/'))
                })
                .map(|(_, v)| v)
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ["api", "v1", "nodes", name] => {
            let st = state.lock().expect("state");
            match st.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name)) {
                Some(n) => json_response(StatusCode::OK, &serde_json::to_value(n).expect("node json")),
                None => About {
                    group: "",
                    resource: "nodes",
                    name,
                }
                .not_found(),
            }
        }
        // Pods of every namespace (`-A`), or of one.
        ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"] => {
            let ns = parts.get(3).copied();
            let q = query(&req);
            let st = state.lock().expect("state");
            let items: Vec<Value> = st
                .pods
                .iter()
                .filter(|p| ns.is_none() || p.metadata.namespace.as_deref() == ns)
                .filter(|p| q.get("labelSelector").is_none_or(|s| labels_match(p, s)))
                .filter(|p| q.get("fieldSelector").is_none_or(|s| fields_match(p, s)))
                .map(|p| serde_json::to_value(p).expect("pod json"))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ["api", "v1", "namespaces", ns, "pods", name] => {
            let st = state.lock().expect("state");
            let found = st.pods.iter().find(|p| {
                p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
            });
            match found {
                Some(p) => json_response(StatusCode::OK, &serde_json::to_value(p).expect("pod json")),
                None => About {
                    group: "",
                    resource: "pods",
                    name,
                }
                .not_found(),
            }
        }
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
            portforward(req, &state, &forbid, &user, ns, name).await
        }
        _ => match state.lock().expect("state").objects.get(&path) {
            Some(o) => json_response(StatusCode::OK, o),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server could not find {path}"),
            ),
        },
    };
    Ok(resp)
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

/// A TokenReview or SubjectAccessReview, from the agent's ServiceAccount
/// only (others are forbidden, as without RBAC for reviews): the request
/// echoed with its `status` filled in.
async fn review(req: Request<Incoming>, state: &Mutex<State>, kind: &str) -> Response<Full<Bytes>> {
    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let caller = caller(&req, &state.lock().expect("state"));
    let body = body_bytes(req).await;
    let mut st = state.lock().expect("state");
    let Some(caller_user) = caller else {
        return unauthorized();
    };
    let resource = if kind == "TokenReview" {
        "tokenreviews"
    } else {
        "subjectaccessreviews"
    };
    let group = path_group(kind);
    if caller_user != AGENT_USER {
        let about = About {
            group,
            resource,
            name: "",
        };
        return about.forbidden(&caller_user, "create", "", None);
    }
    let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    let api_version = format!("{group}/v1");
    if obj["kind"] != kind || obj["apiVersion"] != api_version {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "expected a {group}/v1 {kind}, got {} {}",
                obj["apiVersion"], obj["kind"]
            ),
        );
    }
    st.reviews.push(obj.clone());
    let spec = obj["spec"].clone();
    obj["metadata"] = created_metadata(&spec, &api_version, &user_agent);
    // `omitempty` everywhere: an invalid token's review has no
    // `authenticated`, an empty `user`; RBAC gives no `reason`.
    obj["status"] = if kind == "TokenReview" {
        let token = spec["token"].as_str().unwrap_or("");
        if st.expiring.remove(token) {
            st.tokens.remove(token);
        }
        match st.tokens.get(token) {
            Some(user) => json!({"authenticated": true, "user": user, "audiences": [AUDIENCE]}),
            None => json!({"user": {}, "error": "invalid bearer token"}),
        }
    } else {
        let user = spec["user"].as_str().unwrap_or("");
        let groups: Vec<String> = spec["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let attrs = &spec["resourceAttributes"];
        json!({"allowed": st.grants.iter().any(|g| g.allows(user, &groups, attrs))})
    };
    json_response(StatusCode::CREATED, &obj)
}

/// The audience of the cluster's tokens (its issuer's default).
const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The metadata the API server gives an object created without a name (a
/// review): no timestamp, and the fields the request set, owned by the
/// manager its User-Agent names up to the first `/` (none without one).
fn created_metadata(spec: &Value, api_version: &str, user_agent: &str) -> Value {
    /// `f:` keys for each field set in `v`, `.` for an object that is
    /// itself a field, as `fieldsV1` lists them.
    fn fields(v: &Value) -> Value {
        let Value::Object(m) = v else {
            return json!({});
        };
        m.iter()
            .map(|(k, v)| {
                let mut f = fields(v);
                if v.is_object() {
                    f["."] = json!({});
                }
                (format!("f:{k}"), f)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
    let mut entry = json!({
        "operation": "Update", "apiVersion": api_version,
        "time": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": fields(spec)},
    });
    let manager = user_agent.split('/').next().unwrap_or("");
    if !manager.is_empty() {
        entry["manager"] = manager.into();
    }
    json!({"creationTimestamp": null, "managedFields": [entry]})
}

fn path_group(kind: &str) -> &'static str {
    if kind == "TokenReview" {
        "authentication.k8s.io"
    } else {
        "authorization.k8s.io"
    }
}

/// Server-side apply, as far as kubectl-ns uses it: the applied fields are
/// merged into the stored object (maps merge, everything else is replaced;
/// fields dropped from a later apply are not removed), with a new
/// generation and resourceVersion. A DaemonSet is then scheduled at once,
/// as its controller and the kubelets would report it: one pod on each
/// node its template selects, Pending on a node that is not Ready, and
/// ready a moment later unless agents are set to fail.
fn apply(state: &Arc<Mutex<State>>, path: &str, content_type: &str, body: &[u8]) -> Response<Full<Bytes>> {
    if content_type != "application/apply-patch+yaml" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake supports only server-side apply, not {content_type}"),
        );
    }
    let Ok(applied) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
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
fn watch(state: Arc<Mutex<State>>, collection: String, q: &HashMap<String, String>) -> Response<Body> {
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
fn delete(state: &Mutex<State>, path: &str) -> Response<Full<Bytes>> {
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

async fn portforward(
    req: Request<Incoming>,
    state: &Mutex<State>,
    forbid: &AtomicBool,
    user: &str,
    ns: &str,
    name: &str,
) -> Response<Full<Bytes>> {
    let pod = About {
        group: "",
        resource: "pods",
        name,
    };
    if forbid.load(Ordering::SeqCst) {
        return pod.forbidden(user, "create", "portforward", Some(ns));
    }
    let target = {
        let st = state.lock().expect("state");
        // As the API server: a pod that does not exist is 404, whatever
        // was forwarded to it before.
        let exists = st
            .pods
            .iter()
            .any(|p| p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name));
        st.forwards
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
            .filter(|_| exists)
    };
    let Some(netns) = target else {
        return pod.not_found();
    };
    let port: u16 = match query(&req).get("ports").and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "missing or invalid ports".into(),
            );
        }
    };
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == PORTFORWARD_PROTOCOL));
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "not a WebSocket upgrade".into(),
        );
    };
    if !offered {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("subprotocol {PORTFORWARD_PROTOCOL} not offered"),
        );
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        bridge(ws, port, netns).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", PORTFORWARD_PROTOCOL)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

/// Connects to 127.0.0.1:`port` inside the network namespace of process
/// `pid`, as the kubelet's port-forward does for a pod: on a thread of its
/// own, which joins that namespace and ends, so no other task's sockets are
/// made there.
pub async fn connect_in_netns(pid: i32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| -> std::io::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let std = rx.await.map_err(std::io::Error::other)??;
    tokio::net::TcpStream::from_std(std)
}

/// Bridges one forwarded port (channels 0 and 1) to the pod's loopback.
async fn bridge<S>(ws: WebSocketStream<S>, port: u16, netns: i32)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    for ch in [0u8, 1] {
        if sink.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
            return;
        }
    }
    // Go's net package, which the API server and kubelet are built on, sets
    // TCP_NODELAY on every connection; so does the fake.
    let tcp = match connect_in_netns(netns, port).await {
        Ok(t) => {
            let _ = t.set_nodelay(true);
            t
        }
        Err(e) => {
            let mut msg = vec![1u8];
            msg.extend_from_slice(format!("error forwarding port {port}: {e}").as_bytes());
            let _ = sink.send(Message::binary(msg)).await;
            let _ = sink.close().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let up = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) if b.len() > 1 && b[0] == 0 => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data[1..]).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rd.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf[0] = 0;
                if sink.send(Message::binary(buf[..=n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
    up.abort();
}

impl FakeApi {
    /// Starts the server on 127.0.0.1 with a fresh self-signed certificate.
    pub fn start() -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
        let cert_pem = cert.cert.pem();
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
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            tokens: [
                (
                    USER_TOKEN.to_owned(),
                    user_info(USER_TOKEN, USER, &["system:authenticated"]),
                ),
                (
                    AGENT_TOKEN.to_owned(),
                    user_info(
                        AGENT_TOKEN,
                        AGENT_USER,
                        &[
                            "system:serviceaccounts",
                            "system:serviceaccounts:kubectl-ns-system",
                            "system:authenticated",
                        ],
                    ),
                ),
            ]
            .into(),
            // The default user may do anything, so tests about other things
            // pass the agent's checks.
            grants: vec![Grant::new(USER, "*", "*", "*")],
            ..Default::default()
        }));
        // As the API server publishes it at start: the CA that signs the
        // client certificates it accepts, for extension servers to use.
        let (client_ca, client_ca_pem) = client_ca();
        state.lock().expect("state").objects.insert(
            CLIENT_CA_PATH.to_owned(),
            json!({
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system", "resourceVersion": "1"},
                "data": {"client-ca-file": client_ca_pem},
            }),
        );
        let forbid = Arc::new(AtomicBool::new(false));
        let (st, fb) = (state.clone(), forbid.clone());
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let (acceptor, st, fb) = (acceptor.clone(), st.clone(), fb.clone());
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
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(dir.path().join("ca.crt"), &cert_pem).expect("ca.crt");
        std::fs::write(dir.path().join("agent-token"), AGENT_TOKEN).expect("agent token");
        let ca = base64::engine::general_purpose::STANDARD.encode(cert_pem);
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {ca}\n\
                 users:\n- name: tester\n  user:\n    token: {USER_TOKEN}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: default\n",
                addr.port()
            ),
        )
        .expect("kubeconfig");
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

    /// A token the TokenReview endpoint vouches for, naming `user` in
    /// `groups`.
    pub fn add_user(&self, token: &str, user: &str, groups: &[&str]) {
        self.state
            .lock()
            .expect("state")
            .tokens
            .insert(token.to_owned(), user_info(token, user, groups));
    }

    /// Makes `token` expire when an agent's TokenReview asks about it: the
    /// plugin's own requests with it have passed, the agent's check fails,
    /// as for a token that expired in between.
    pub fn expire_on_review(&self, token: &str) {
        self.state
            .lock()
            .expect("state")
            .expiring
            .insert(token.to_owned());
    }

    /// A kubeconfig whose user holds a client certificate the cluster's
    /// client CA signed: CN `user`, O `group` (as `kubeadm` makes them;
    /// rcgen writes one O at most), and no token.
    pub fn kubeconfig_with_cert(&self, user: &str, group: Option<&str>) -> PathBuf {
        self.kubeconfig_signed_by(&self.client_ca, user, group)
    }

    /// [`FakeApi::kubeconfig_with_cert`], signed by `ca` instead.
    pub fn kubeconfig_signed_by(
        &self,
        ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
        user: &str,
        group: Option<&str>,
    ) -> PathBuf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, user);
        if let Some(g) = group {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, g);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, ca).expect("sign");
        let b64 = |t: String| base64::engine::general_purpose::STANDARD.encode(t);
        self.kubeconfig_for(&format!(
            "client-certificate-data: {}\n    client-key-data: {}",
            b64(cert.pem()),
            b64(key.serialize_pem())
        ))
    }

    /// Removes the client CA, as on a cluster whose API server takes no
    /// client certificates.
    pub fn remove_client_ca(&self) {
        self.state.lock().expect("state").objects.remove(CLIENT_CA_PATH);
    }

    /// Replaces every grant (the default: [`USER`] may do anything).
    pub fn set_grants(&self, grants: Vec<Grant>) {
        self.state.lock().expect("state").grants = grants;
    }

    /// The TokenReview and SubjectAccessReview bodies received so far.
    pub fn reviews(&self) -> Vec<Value> {
        self.state.lock().expect("state").reviews.clone()
    }

    /// The environment that points an agent at this server, as a pod's
    /// Service address and ServiceAccount mount would, on node `node`
    /// (reachable once [`FakeApi::serve_in_netns`] runs for the agent).
    pub fn agent_env(&self, node: &str) -> Vec<(String, String)> {
        let dir = self._dir.path();
        [
            ("KNS_KUBE_API", format!("https://127.0.0.1:{IN_POD_PORT}")),
            ("KNS_KUBE_CA", dir.join("ca.crt").display().to_string()),
            (
                "KNS_KUBE_TOKEN_FILE",
                dir.join("agent-token").display().to_string(),
            ),
            ("NODE_NAME", node.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into()
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

    /// Gives the user only the kubectl-ns-user roles: reading pods and
    /// nodes works, everything an install needs is forbidden.
    pub fn user_only(&self, on: bool) {
        self.state.lock().expect("state").user_only = on;
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

    /// Gives `user` no rights at all, as for a user no RBAC binding names:
    /// each of their requests gets RBAC's 403.
    pub fn without_rights(&self, user: &str) {
        self.state
            .lock()
            .expect("state")
            .rightless
            .insert(user.to_owned());
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

    /// Removes pod `ns/name`, as when its controller replaced it.
    pub fn remove_pod(&self, ns: &str, name: &str) -> Option<Pod> {
        let mut st = self.state.lock().expect("state");
        let i = st.pods.iter().position(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name)
        })?;
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

    /// A kubeconfig like [`FakeApi::kubeconfig`] whose user is `user` (the
    /// YAML under `user:`, e.g. `token: T`; empty for no credentials).
    pub fn kubeconfig_for(&self, user: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let user = if user.is_empty() {
            " {}".to_owned()
        } else {
            format!("\n    {user}")
        };
        let text = text.replace(&format!("\n    token: {USER_TOKEN}"), &user);
        let path = self._dir.path().join(format!("kubeconfig-{n}"));
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    /// The kubeconfig path as a string, for `--kubeconfig`.
    pub fn kubeconfig_arg(&self) -> String {
        self.kubeconfig.display().to_string()
    }
}

/// The `user` a TokenReview of `token` names: as for a ServiceAccount
/// token, with the credential's ID in `extra`.
fn user_info(token: &str, user: &str, groups: &[&str]) -> Value {
    json!({"username": user, "uid": format!("{user}-uid"), "groups": groups,
           "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={token}")]}})
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
