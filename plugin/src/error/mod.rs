//! Exit codes of `kubectl-ns`.
//!
//! | code | meaning |
//! |------|---------|
//! | 0–125 | the remote command's own exit code (`exec`) |
//! | 1 | `audit`: a finding of a kind named in `--fail-on` exists |
//! | 126 | the tool exists but cannot be executed |
//! | 127 | the tool was not found (on the node, with a hint to the toolbox image and `--tools agent`; with `-m`: not in the container image; with `--tools agent`: not in the agent's image) |
//! | 128+N | the remote command died of signal N (130 for SIGINT); or kubectl-ns got signal N before the session was open, or twice within a second while the agent did not answer |
//! | 2 | usage error: bad flags or arguments |
//! | 255 | kubectl-ns itself failed: agent unreachable, target not found, forbidden, credentials rejected, … |
//!
//! Errors from other layers (the API server, the agent's gRPC statuses, the
//! transport) are worded for the user here, in one place, with a hint line
//! where one helps.

use crate::agent::transport::TransportError;

/// Usage errors.
pub const USAGE: u8 = 2;
/// kubectl-ns's own failures.
pub const FAILURE: u8 = 255;

/// An error that ends the command with a given exit code, already worded
/// for the user (with a hint line where one helps).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// The message's first line: the failure without its hints, for one
    /// row of a many-target report.
    pub fn first_line(&self) -> String {
        self.message.lines().next().unwrap_or_default().to_owned()
    }

    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure of kubectl-ns itself (exit 255).
    pub fn own(message: impl Into<String>) -> Failure {
        Failure::new(FAILURE, message)
    }
}

/// An error and its causes, `a: b: c`, as anyhow's alternate form prints
/// them (transport errors hide the useful part, connection refused or no
/// such file, in their sources), less a cause that only repeats the one
/// before it: tonic's and hyper's connect errors print their inner error
/// and return it as their source too.
fn chain(e: impl Into<anyhow::Error>) -> String {
    let mut causes: Vec<String> = e.into().chain().map(ToString::to_string).collect();
    causes.dedup();
    causes.join(": ")
}

/// Whether an I/O error in `e`'s causes is a refused permission (a unix
/// socket, or its directory, that the caller may not enter).
fn permission_denied(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// The API server the kubeconfig names, once read: connection errors say
/// which server did not answer, as kubectl's do.
static API_SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_api_server(url: String) {
    let _ = API_SERVER.set(url);
}

/// A hint naming the API server, for an error that never reached it.
fn unreachable_hint() -> String {
    API_SERVER
        .get()
        .map(|url| {
            format!(
                "\nHint: the connection to the API server at {url} failed; `kubectl config view --minify` shows the cluster \
                 this kubeconfig uses (--context picks another)"
            )
        })
        .unwrap_or_default()
}

/// How to get credentials the API server accepts again, for a hint: by
/// far the most common rejection is a token past its expiry (`kubectl
/// create token` gives an hour by default).
const RENEW_CREDENTIALS: &str = "an expired token is the usual cause: log in again or get a new token (`kubectl \
     create token NAME --namespace NS` for a ServiceAccount; a kubeconfig user with an exec plugin gets a fresh \
     one from it). `kubectl config view --minify` shows which user this kubeconfig uses, `kubectl auth whoami` \
     whether the API server accepts it";

/// Words an API error for the user; `what` says what was being attempted.
pub fn api_failure(what: &str, e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.code == 401 => Failure::own(format!(
            "{what}: the API server rejected the kubeconfig's credentials ({} {})\nHint: {RENEW_CREDENTIALS}",
            s.code, s.message
        )),
        kube::Error::Api(s) if s.code == 403 => Failure::own(format!(
            "{what}: forbidden: {}\nHint: kubectl-ns needs get/list on pods, and create on pods/portforward in \
             the agent's namespace (the ClusterRole kubectl-ns-user grants them)",
            s.message
        )),
        // The Status is the API server's own wording; kube's Display of it
        // adds a Debug dump of the whole object.
        kube::Error::Api(s) => Failure::own(format!("{what}: {} ({} {})", s.message, s.code, s.reason)),
        // kube's client errors print their source inline too: start the
        // chain at the source, or every cause would be said twice.
        kube::Error::Service(source) => Failure::own(format!(
            "{what}: {}{}",
            chain(anyhow::Error::from_boxed(source)),
            unreachable_hint()
        )),
        kube::Error::HyperError(_) => Failure::own(format!("{what}: {}{}", chain(e), unreachable_hint())),
        e => Failure::own(format!("{what}: {}", chain(e))),
    }
}

/// The rule the agent's authorizer found missing, from the
/// `kns-denied-rule` trailer: a SubjectAccessReview's resourceAttributes
/// and the user.
#[derive(Debug, serde::Deserialize)]
struct DeniedRule {
    user: String,
    #[serde(default)]
    namespace: String,
    verb: String,
    #[serde(default)]
    group: String,
    resource: String,
    #[serde(default)]
    subresource: String,
}

/// The ClusterRole `manifests/` ships for the node right.
const NODE_ADMIN_ROLE: &str = "kubectl-ns-node-admin";

/// The `kubectl create …` commands that would grant `d`, for a hint.
fn grant(d: &DeniedRule) -> String {
    let subject = match d.user.strip_prefix("system:serviceaccount:") {
        Some(sa) => format!("--serviceaccount={sa}"),
        None => format!("--user={}", d.user),
    };
    let tag: String = d
        .user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut resource = d.resource.clone();
    if !d.group.is_empty() {
        resource = format!("{resource}.{}", d.group);
    }
    if !d.subresource.is_empty() {
        resource = format!("{resource}/{}", d.subresource);
    }
    let role = format!(
        "kubectl-ns-{}-{}{}",
        d.resource,
        d.verb,
        if d.subresource.is_empty() {
            String::new()
        } else {
            format!("-{}", d.subresource)
        }
    );
    if d.group == "kubectl-ns.io" && d.resource == "nodes" && d.subresource == "exec" {
        return format!(
            "  kubectl create clusterrolebinding {NODE_ADMIN_ROLE}-{tag} --clusterrole={NODE_ADMIN_ROLE} {subject}"
        );
    }
    if d.namespace.is_empty() {
        format!(
            "  kubectl create clusterrole {role} --verb={} --resource={resource}\n  \
             kubectl create clusterrolebinding {role}-{tag} --clusterrole={role} {subject}",
            d.verb
        )
    } else {
        let ns = &d.namespace;
        format!(
            "  kubectl create role {role} --verb={} --resource={resource} --namespace {ns}\n  \
             kubectl create rolebinding {role}-{tag} --role={role} {subject} --namespace {ns}",
            d.verb
        )
    }
}

/// Words a gRPC error from the agent for the user.
pub fn status_failure(s: &tonic::Status) -> Failure {
    let denied = s.metadata().get(kns_proto::DENIED_RULE_HEADER);
    let grant_hint;
    let renew_hint;
    let policy = s.metadata().get(kns_proto::POLICY_HEADER).is_some();
    let hint = match s.code() {
        _ if policy => {
            "\nHint: this is the node operator's kubectl-ns policy (the kubectl-ns-policy ConfigMap in the \
             agent's namespace), not your Kubernetes rights: ask whoever runs the cluster"
        }
        tonic::Code::PermissionDenied if denied.is_some() => {
            match denied
                .and_then(|v| v.to_str().ok())
                .and_then(|v| serde_json::from_str::<DeniedRule>(v).ok())
            {
                Some(d) => {
                    grant_hint = format!(
                        "\nHint: the agent asks the API server, as `kubectl auth can-i` would; a cluster admin can grant it with:\n{}",
                        grant(&d)
                    );
                    grant_hint.as_str()
                }
                None => "",
            }
        }
        tonic::Code::PermissionDenied => {
            "\nHint: the agent lacks the privilege for this; it needs hostPID and CAP_SYS_ADMIN/CAP_SYS_PTRACE on the node"
        }
        tonic::Code::Unauthenticated if s.metadata().get(kns_proto::TOKEN_REJECTED_HEADER).is_some() => {
            renew_hint = format!("\nHint: your credentials were rejected; {RENEW_CREDENTIALS}");
            renew_hint.as_str()
        }
        tonic::Code::Unauthenticated => {
            "\nHint: kubectl-ns sends the agent your kubeconfig user's bearer token (token, tokenFile, or an exec \
             plugin's) or, for a user without one, presents its client certificate (client-certificate and \
             client-key). `kubectl auth whoami` shows who the API server thinks you are"
        }
        tonic::Code::Unavailable if s.message().contains("shutting down") => "",
        tonic::Code::Unavailable => "\nHint: the agent or the node's container runtime is not answering",
        // A gRPC status made from a plain HTTP answer: whatever listens
        // there is no kubectl-ns agent.
        _ if ["grpc-status header missing", "h2 protocol error"]
            .iter()
            .any(|m| s.message().contains(m)) =>
        {
            "\nHint: something answered there, but not as a kubectl-ns agent (an HTTP server, another \
             service, a wrong port?): check the address against the agent's --listen"
        }
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

/// Words the loss of the agent's connection while a session runs (`s` came
/// from the transport, not from the agent): the agent answered as one, so
/// it was the agent, and it went away. `direct`: reached with `--agent`
/// rather than through a port-forward to its pod.
pub fn broken_session(s: &tonic::Status, direct: bool) -> Failure {
    let (what, processes) = if direct {
        (
            "the agent went away (killed, crashed or restarted)",
            "the tool died with the agent (it is armed to), so the command's exit status is unknown; what the \
             tool started and left running stays in the session's cgroup until an agent starts again in the \
             agent's cgroup (a restarted service), which kills it and logs it; on a node without cgroup v2 \
             nothing ends it: look for it with ps",
        )
    } else {
        (
            "the agent's pod went away (restarted, OOM-killed, evicted) or the port-forward through the API \
             server was cut",
            "if the agent died, the tool died with it and the container runtime ends what it started along with \
             the agent's container; if only the port-forward broke, the agent ended the session as for a client \
             that left. Either way the command's exit status is unknown; `kubectl ns status` shows whether the \
             node's agent is back",
        )
    };
    Failure::own(format!(
        "the connection to the agent broke in the middle of the session ({}): {what}\nHint: {processes}",
        s.message()
    ))
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Failure {
        match e {
            TransportError::BadAddress { .. } => Failure::new(USAGE, e.to_string()),
            TransportError::InvalidAddress { .. } => Failure::new(USAGE, chain(e)),
            TransportError::Unreachable { ref addr, .. }
                if addr.starts_with("unix://") && permission_denied(&e) =>
            {
                Failure::own(format!(
                    "cannot reach the agent at {addr}: its socket serves root only, and kubectl-ns runs as uid {} \
                     (permission denied)\nHint: run kubectl-ns as root on the node (sudo kubectl-ns …); elsewhere, \
                     reach the agent through the cluster: drop --agent and name a pod or node/NODE",
                    nix::unistd::getuid()
                ))
            }
            TransportError::Unreachable { .. } => Failure::own(format!(
                "{}\nHint: is kubectl-ns-agent running and listening there (its --listen)?",
                chain(e)
            )),
            TransportError::Forward { what, source } => api_failure(&what, source),
            TransportError::NoAnswer { ref ns, ref pod, .. } => {
                let hint = format!(
                    "\nHint: the agent pod may be starting or crash-looping; `kubectl -n {ns} describe pod {pod}` shows why"
                );
                Failure::own(format!("{e}{hint}"))
            }
            TransportError::Handshake { .. } => Failure::own(chain(e)),
            TransportError::ClientCertificate { .. } => Failure::own(format!(
                "{e}\nHint: kubectl-ns presents the kubeconfig user's client-certificate and client-key (or their -data \
                 fields) to the agent, as kubectl does to the API server; `kubectl config view --minify` shows them"
            )),
            TransportError::CertificateRefused { .. } => Failure::own(format!(
                "{e}\nHint: the agent accepts the certificates the API server accepts: signed by the cluster's client CA \
                 (client-ca-file in kube-system/extension-apiserver-authentication) and not expired. A token works \
                 as well: add one to the kubeconfig user (for example from `kubectl create token`)"
            )),
            TransportError::Credentials { .. } => Failure::own(format!(
                "{}\nHint: kubectl-ns runs the kubeconfig's exec plugin or reads its tokenFile as kubectl does; \
                 check that `kubectl auth whoami` works",
                chain(e)
            )),
        }
    }
}

/// The exit code for a remote status: the code itself, or 128+N for a
/// signal, as shells report it.
pub fn from_remote(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(c), _) => u8::try_from(c).unwrap_or(FAILURE),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(FAILURE),
        (None, None) => FAILURE,
    }
}

/// How long an agent may take to answer a request, or to open a session
/// (which includes finding the target and starting the tool).
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `call`, or a failure saying the agent took too long: an agent that
/// accepted the connection and then stopped (a stopped process, a wedged
/// node) must not hang kubectl-ns.
pub async fn answered<T>(call: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::time::timeout(ANSWER_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(silent(false)))
}

/// What to say when [`ANSWER_TIMEOUT`] passed. While the target is still
/// being reached (`reaching`: looked up through the API server, then the
/// port-forward opened) the agent may never have been asked.
pub fn silent(reaching: bool) -> Failure {
    let secs = ANSWER_TIMEOUT.as_secs();
    if reaching {
        let server = API_SERVER.get().map(|u| format!(" at {u}")).unwrap_or_default();
        return Failure::own(format!(
            "no answer within {secs} s while reaching the target through the API server{server} (its lookup, \
             then the port-forward to its node's agent)\nHint: `kubectl get --raw /readyz` checks the API server, \
             `kubectl ns status` the agents"
        ));
    }
    Failure::own(format!(
        "the agent did not answer within {secs} s\nHint: it accepted the connection, so it runs but is stuck or \
         overloaded: check its log (kubectl logs -n kubectl-ns-system POD) and `kubectl ns status`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_answer_is_named_as_no_agent() {
        let s = tonic::Status::unknown("grpc-status header missing, mapped from HTTP status code 404");
        let f = status_failure(&s);
        assert!(f.message.contains("not as a kubectl-ns agent"), "{}", f.message);
        assert!(!f.message.contains("upgrade"), "{}", f.message);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(&'static str, #[source] Option<Box<Layer>>);

    #[test]
    fn causes_are_chained_once_each() {
        // A wrapper that prints its inner error and returns it as source.
        let inner = Layer("Connection refused (os error 111)", None);
        let wrapper = Layer("Connection refused (os error 111)", Some(Box::new(inner)));
        let top = Layer("tcp connect error", Some(Box::new(wrapper)));
        assert_eq!(chain(top), "tcp connect error: Connection refused (os error 111)");
    }

    #[test]
    fn api_errors_say_the_servers_words() {
        let status =
            kube::core::Status::failure("etcdserver: request timed out", "InternalError").with_code(500);
        let f = api_failure("cannot get pod default/web", kube::Error::Api(status.boxed()));
        assert_eq!(f.code, FAILURE);
        assert_eq!(
            f.message,
            "cannot get pod default/web: etcdserver: request timed out (500 InternalError)"
        );
        let status = kube::core::Status::failure("pods \"a\" is forbidden", "Forbidden").with_code(403);
        let f = api_failure("cannot list pods", kube::Error::Api(status.boxed()));
        assert!(
            f.message.contains("Hint:") && f.message.contains("kubectl-ns-user"),
            "{}",
            f.message
        );
    }

    /// A real API server's error body (v1.32), recorded in tests/fixtures,
    /// as kube hands it over.
    fn recorded(json: &str) -> kube::Error {
        kube::Error::Api(
            serde_json::from_str::<kube::core::Status>(json)
                .expect("the recorded Status parses")
                .boxed(),
        )
    }

    #[test]
    fn recorded_api_errors_are_worded_for_the_user() {
        let f = api_failure(
            "cannot get pod fx/web",
            recorded(include_str!("../../../tests/fixtures/kube-v1.32/status-401.json")),
        );
        assert_eq!(f.code, FAILURE);
        assert!(
            f.message.starts_with(
                "cannot get pod fx/web: the API server rejected the kubeconfig's credentials (401 Unauthorized)\n\
                 Hint: an expired token is the usual cause: log in again or get a new token"
            ) && f.message.contains("kubectl create token")
                && f.message.contains("kubectl config view --minify"),
            "{}",
            f.message
        );
        let f = api_failure(
            "cannot get pod fx/web",
            recorded(include_str!(
                "../../../tests/fixtures/kube-v1.32/status-403-get-pod.json"
            )),
        );
        assert!(
            f.message.starts_with(
                "cannot get pod fx/web: forbidden: pods \"web\" is forbidden: User \"system:serviceaccount:fx:reader\" \
                 cannot get resource \"pods\" in API group \"\" in the namespace \"fx\"\nHint:"
            ) && f.message.contains("kubectl-ns-user"),
            "{}",
            f.message
        );
        let forward = |json| TransportError::Forward {
            what: "cannot open a port-forward to kubectl-ns-system/x".into(),
            source: recorded(json),
        };
        let denied = forward(include_str!(
            "../../../tests/fixtures/kube-v1.32/status-403-portforward.json"
        ));
        assert!(!denied.agent_gone());
        let f = Failure::from(denied);
        assert!(
            f.message.contains("cannot create resource \"pods/portforward\"")
                && f.message.contains("kubectl-ns-user"),
            "{}",
            f.message
        );
        let missing = include_str!("../../../tests/fixtures/kube-v1.32/status-404-pod.json");
        // What `get_opt` turns into "no such pod".
        let kube::Error::Api(s) = recorded(missing) else {
            unreachable!()
        };
        assert!(s.is_not_found());
        assert!(forward(missing).agent_gone());
    }

    #[test]
    fn rejected_credentials_at_the_agent_say_how_to_renew_them() {
        let mut s = tonic::Status::unauthenticated("the API server rejected the token: invalid bearer token");
        s.metadata_mut()
            .insert(kns_proto::TOKEN_REJECTED_HEADER, "true".parse().unwrap());
        let f = status_failure(&s);
        assert_eq!(f.code, FAILURE);
        assert!(
            f.message.starts_with(
                "the API server rejected the token: invalid bearer token\nHint: your credentials were rejected; \
                 an expired token is the usual cause"
            ) && f.message.contains("kubectl create token"),
            "{}",
            f.message
        );
        // Nothing was rejected when there was nothing to check.
        let f = status_failure(&tonic::Status::unauthenticated("no bearer token"));
        assert!(!f.message.contains("expired"), "{}", f.message);
    }

    #[test]
    fn a_gone_agent_pod_is_told_from_other_port_forward_failures() {
        let forward = |code| TransportError::Forward {
            what: "cannot open a port-forward".into(),
            source: kube::Error::Api(kube::core::Status::failure("x", "y").with_code(code).boxed()),
        };
        assert!(forward(404).agent_gone());
        assert!(!forward(403).agent_gone(), "RBAC is not about the pod");
        let silent = TransportError::NoAnswer {
            ns: "kubectl-ns-system".into(),
            pod: "agent-1".into(),
            port: 7469,
            reason: "connection refused".into(),
        };
        assert!(silent.agent_gone());
        let f = Failure::from(silent);
        assert!(
            f.message
                .contains("kubectl -n kubectl-ns-system describe pod agent-1"),
            "{}",
            f.message
        );
    }

    fn denied(rule: serde_json::Value, message: &str) -> Failure {
        let mut s = tonic::Status::permission_denied(message);
        s.metadata_mut()
            .insert(kns_proto::DENIED_RULE_HEADER, rule.to_string().parse().unwrap());
        status_failure(&s)
    }

    #[test]
    fn a_denial_names_the_grant() {
        let f = denied(
            serde_json::json!({"user": "alice", "namespace": "default", "verb": "create", "group": "",
                "resource": "pods", "subresource": "exec", "name": "web"}),
            "alice may not create pods/exec on pod default/web",
        );
        assert!(
            f.message
                .starts_with("alice may not create pods/exec on pod default/web\n"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains(
                "kubectl create role kubectl-ns-pods-create-exec --verb=create --resource=pods/exec --namespace default"
            ) && f.message.contains(
                "kubectl create rolebinding kubectl-ns-pods-create-exec-alice --role=kubectl-ns-pods-create-exec --user=alice --namespace default"
            ),
            "{}",
            f.message
        );
        let f = denied(
            serde_json::json!({"user": "system:serviceaccount:ops:bot", "verb": "create", "group": "kubectl-ns.io",
                "resource": "nodes", "subresource": "exec", "name": "n1"}),
            "no",
        );
        assert!(
            f.message.contains(
                "kubectl create clusterrolebinding kubectl-ns-node-admin-system-serviceaccount-ops-bot \
                 --clusterrole=kubectl-ns-node-admin --serviceaccount=ops:bot"
            ),
            "{}",
            f.message
        );
        // Refusals without a rule (a non-root unix peer) get no misleading hint.
        let f = denied(serde_json::json!({"user": "unix:uid:1000"}), "no");
        assert_eq!(f.message, "no");
        // The agent's own lack of privilege is another matter.
        let f = status_failure(&tonic::Status::permission_denied("setns: EPERM"));
        assert!(f.message.contains("CAP_SYS_ADMIN"), "{}", f.message);
    }

    #[test]
    fn remote_status_maps_like_a_shell() {
        assert_eq!(from_remote(Some(0), None), 0);
        assert_eq!(from_remote(Some(3), None), 3);
        assert_eq!(from_remote(None, Some(2)), 130);
        assert_eq!(from_remote(None, Some(9)), 137);
        assert_eq!(from_remote(None, None), FAILURE);
    }
}
