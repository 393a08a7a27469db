//! The wording of every failure, with a hint line where one helps: errors
//! from other layers (the API server, the agent's gRPC statuses, the
//! transport) are said here for the user, in one place, as a [`Worded`]:
//! the summary apart from the lines that follow it.

use super::TransportError;
use super::grant::{DeniedRule, grant};

/// A failure as the user reads it: what happened, then the lines that
/// follow (`Hint:` lines, the commands of a grant).
pub(super) struct Worded {
    pub summary: String,
    pub lines: Vec<String>,
}

impl Worded {
    /// A failure in words from elsewhere (the agent's message, a cause's
    /// `Display`), which may run over lines: the first is the summary, the
    /// others come before `hints`.
    fn said(text: String, hints: impl IntoIterator<Item = String>) -> Worded {
        let mut lines = text.split('\n').map(str::to_owned);
        let summary = lines.next().unwrap_or_default();
        Worded {
            summary,
            lines: lines.chain(hints).collect(),
        }
    }

    /// One of kubectl-ns's own failures: its message, then its hints.
    pub(super) fn own(summary: &dyn std::fmt::Display, hints: Vec<String>) -> Worded {
        Worded {
            summary: summary.to_string(),
            lines: hints.into_iter().map(hint).collect(),
        }
    }
}

/// A hint line.
fn hint(text: impl std::fmt::Display) -> String {
    format!("Hint: {text}")
}

/// An error and its causes, `a: b: c`, as anyhow's alternate form prints
/// them (transport errors hide the useful part, connection refused or no
/// such file, in their sources), less a cause that only repeats the one
/// before it: tonic's and hyper's connect errors print their inner error
/// and return it as their source too.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut causes: Vec<String> = std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect();
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
pub(super) static API_SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_api_server(url: String) {
    let _ = API_SERVER.set(url);
}

/// A hint naming the API server, for an error that never reached it.
fn unreachable_hint() -> Option<String> {
    API_SERVER.get().map(|url| {
        hint(format!(
            "the connection to the API server at {url} failed; `kubectl config view --minify` shows the cluster \
             this kubeconfig uses (--context picks another)"
        ))
    })
}

/// How to get credentials the API server accepts again, for a hint: by
/// far the most common rejection is a token past its expiry (`kubectl
/// create token` gives an hour by default).
const RENEW_CREDENTIALS: &str = "an expired token is the usual cause: log in again or get a new token (`kubectl \
     create token NAME --namespace NS` for a ServiceAccount; a kubeconfig user with an exec plugin gets a fresh \
     one from it). `kubectl config view --minify` shows which user this kubeconfig uses, `kubectl auth whoami` \
     whether the API server accepts it";

/// Words an API error for the user; `what` says what was being attempted.
pub(super) fn api(what: &str, e: &kube::Error) -> Worded {
    match e {
        kube::Error::Api(s) if s.code == 401 => Worded::said(
            format!(
                "{what}: the API server rejected the kubeconfig's credentials ({} {})",
                s.code, s.message
            ),
            [hint(RENEW_CREDENTIALS)],
        ),
        kube::Error::Api(s) if s.code == 403 => Worded::said(
            format!("{what}: forbidden: {}", s.message),
            [hint(
                "kubectl-ns needs get/list on pods, and get and create on pods/portforward in the agent's namespace \
                 (its port-forward is a WebSocket GET, which v1.35 authorizes as both; the ClusterRole and the \
                 Role kubectl-ns-user grant them)",
            )],
        ),
        // The Status is the API server's own wording; kube's Display of it
        // adds a Debug dump of the whole object.
        kube::Error::Api(s) => Worded::said(format!("{what}: {} ({} {})", s.message, s.code, s.reason), None),
        // kube's client errors print their source inline too: start the
        // chain at the source, or every cause would be said twice.
        kube::Error::Service(source) => {
            Worded::said(format!("{what}: {}", chain(&**source)), unreachable_hint())
        }
        kube::Error::HyperError(_) => Worded::said(format!("{what}: {}", chain(e)), unreachable_hint()),
        e => Worded::said(format!("{what}: {}", chain(e)), None),
    }
}

/// The hint lines for a gRPC error from the agent.
fn status_hints(s: &tonic::Status) -> Vec<String> {
    let denied = s.metadata().get(kns_proto::DENIED_RULE_HEADER);
    let policy = s.metadata().get(kns_proto::POLICY_HEADER).is_some();
    let text = match s.code() {
        _ if policy => {
            "this is the node operator's kubectl-ns policy (the kubectl-ns-policy ConfigMap in the agent's \
             namespace), not your Kubernetes rights: ask whoever runs the cluster"
        }
        tonic::Code::PermissionDenied if denied.is_some() => {
            return match denied
                .and_then(|v| v.to_str().ok())
                .and_then(|v| serde_json::from_str::<DeniedRule>(v).ok())
            {
                Some(d) => std::iter::once(hint(
                    "the agent asks the API server, as `kubectl auth can-i` would; a cluster admin can grant it with:",
                ))
                .chain(grant(&d))
                .collect(),
                None => Vec::new(),
            };
        }
        tonic::Code::PermissionDenied => {
            "the agent lacks the privilege for this; it needs hostPID and CAP_SYS_ADMIN/CAP_SYS_PTRACE on the node"
        }
        tonic::Code::Unauthenticated if s.metadata().get(kns_proto::TOKEN_REJECTED_HEADER).is_some() => {
            return vec![hint(format!(
                "your credentials were rejected; {RENEW_CREDENTIALS}"
            ))];
        }
        tonic::Code::Unauthenticated => {
            "kubectl-ns sends the agent your kubeconfig user's bearer token (token, tokenFile, or an exec \
             plugin's) or, for a user without one, presents its client certificate (client-certificate and \
             client-key). `kubectl auth whoami` shows who the API server thinks you are"
        }
        tonic::Code::Unavailable if s.message().contains("shutting down") => return Vec::new(),
        tonic::Code::Unavailable => "the agent or the node's container runtime is not answering",
        // A gRPC status made from a plain HTTP answer: whatever listens
        // there is no kubectl-ns agent.
        _ if ["grpc-status header missing", "h2 protocol error"]
            .iter()
            .any(|m| s.message().contains(m)) =>
        {
            "something answered there, but not as a kubectl-ns agent (an HTTP server, another service, a wrong \
             port?): check the address against the agent's --listen"
        }
        tonic::Code::Unimplemented => "the agent is older than this kubectl-ns; upgrade it",
        _ => return Vec::new(),
    };
    vec![hint(text)]
}

/// Words a gRPC error from the agent for the user.
pub(super) fn status(s: &tonic::Status) -> Worded {
    let msg = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    };
    Worded::said(msg, status_hints(s))
}

/// Words the loss of the agent's connection while a session runs (`s` came
/// from the transport, not from the agent): the agent answered as one, so
/// it was the agent, and it went away. `direct`: reached with `--agent`
/// rather than through a port-forward to its pod.
pub(super) fn broken_session(s: &tonic::Status, direct: bool) -> Worded {
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
    Worded::said(
        format!(
            "the connection to the agent broke in the middle of the session ({}): {what}",
            s.message()
        ),
        [hint(processes)],
    )
}

/// Words a failure to reach or use the agent's connection.
pub(super) fn transport(e: &TransportError) -> Worded {
    let (text, hint_text) = match e {
        TransportError::BadAddress { .. } => (e.to_string(), None),
        TransportError::InvalidAddress { .. } | TransportError::Handshake { .. } => (chain(e), None),
        TransportError::Unreachable { addr, .. } if addr.starts_with("unix://") && permission_denied(e) => (
            format!(
                "cannot reach the agent at {addr}: its socket serves root only, and kubectl-ns runs as uid {} \
                 (permission denied)",
                nix::unistd::getuid()
            ),
            Some(
                "run kubectl-ns as root on the node (sudo kubectl-ns …); elsewhere, reach the agent through the \
                 cluster: drop --agent and name a pod or node/NODE"
                    .to_owned(),
            ),
        ),
        TransportError::Unreachable { .. } => (
            chain(e),
            Some("is kubectl-ns-agent running and listening there (its --listen)?".to_owned()),
        ),
        TransportError::Forward { what, source } => return api(what, source),
        TransportError::NoAnswer { ns, pod, .. } => (
            e.to_string(),
            Some(format!(
                "the agent pod may be starting or crash-looping; `kubectl -n {ns} describe pod {pod}` shows why"
            )),
        ),
        TransportError::ClientCertificate { .. } => (
            e.to_string(),
            Some(
                "kubectl-ns presents the kubeconfig user's client-certificate and client-key (or their -data \
                 fields) to the agent, as kubectl does to the API server; `kubectl config view --minify` shows them"
                    .to_owned(),
            ),
        ),
        TransportError::CertificateRefused { .. } => (
            e.to_string(),
            Some(
                "the agent accepts the certificates the API server accepts: signed by the cluster's client CA \
                 (client-ca-file in kube-system/extension-apiserver-authentication) and not expired. A token \
                 works as well: add one to the kubeconfig user (for example from `kubectl create token`)"
                    .to_owned(),
            ),
        ),
        TransportError::Credentials { .. } => (
            chain(e),
            Some(
                "kubectl-ns runs the kubeconfig's exec plugin or reads its tokenFile as kubectl does; check that \
                 `kubectl auth whoami` works"
                    .to_owned(),
            ),
        ),
    };
    Worded::said(text, hint_text.map(hint))
}

/// What to say when the answer timeout (`after`) passed. While the target is still
/// being reached (`reaching`: looked up through the API server, then the
/// port-forward opened) the agent may never have been asked.
pub(super) fn silent(reaching: bool, after: std::time::Duration) -> Worded {
    let secs = after.as_secs();
    if reaching {
        let server = API_SERVER.get().map(|u| format!(" at {u}")).unwrap_or_default();
        return Worded::said(
            format!(
                "no answer within {secs} s while reaching the target through the API server{server} (its \
                 lookup, then the port-forward to its node's agent)"
            ),
            [hint(
                "`kubectl get --raw /readyz` checks the API server, `kubectl ns status` the agents",
            )],
        );
    }
    Worded::said(
        format!("the agent did not answer within {secs} s"),
        [hint(
            "it accepted the connection, so it runs but is stuck or overloaded: check its log (kubectl logs -n \
             kubectl-ns-system POD) and `kubectl ns status`",
        )],
    )
}
