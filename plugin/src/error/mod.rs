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
//! | 255 | kubectl-ns itself failed: agent unreachable, target not found, forbidden, credentials rejected, …; or (`exec`) the session was ended by `kubectl ns sessions kill`, with `session ended by USER` on stderr |
//!
//! How errors flow: each layer fails with a typed error of its own, one
//! variant per mistake or failed step, with what it concerns in fields
//! (argument mistakes [`UsageError`] from `cli`, the commands and
//! `agent::route`; [`ResolveError`] from `kube`'s resolution and the
//! kubeconfig; [`InstallError`]; [`SessionError`] and [`LocalError`] from
//! `exec`; [`ReplayError`] from `replay`; [`TransportError`] on the way to
//! an agent), or hands over what
//! another layer said (the API server's `kube::Error`, the agent's
//! `tonic::Status`). A [`Failure`] wraps each (`?` converts them); it says
//! the exit code ([`Failure::code`]), its summary ([`Failure::summary`]:
//! what happened, the layer's `#[error]` or `wording`'s for what other
//! layers said) and its hint lines ([`Failure::hints`], with the `kubectl
//! create rolebinding` commands of `grant`) apart. They are put together
//! once, at the edge: `main` prints the `Display` (the summary, then the
//! hint lines), a row of a many-target report the summary (with its hints
//! on the same line, [`Failure::compact`], for a node's entry).
//!
//! The layers' error types live here, each in a file of its own, rather
//! than in the layers: `error` imports nothing from the layers that return
//! its failures (`tests/layout.rs` refuses modules that import each other).
mod grant;
mod install;
mod live;
mod replay;
mod resolve;
mod session;
mod transport;
mod usage;
mod wording;

pub use grant::grant_for;
pub use install::InstallError;
pub use live::LiveError;
pub use replay::ReplayError;
pub use resolve::{ResolveError, Stopped};
pub use session::{LocalError, SessionError};
pub use transport::TransportError;
pub use usage::{IPC_FLAG, UsageError};
use wording::Worded;
pub use wording::set_api_server;

/// Usage errors.
pub const USAGE: u8 = 2;
/// kubectl-ns's own failures.
pub const FAILURE: u8 = 255;

/// What ended a command, by where it came from. Its `Display` is the
/// message for the user: the [`summary`](Self::summary), then the
/// [`hints`](Self::hints) on lines of their own; [`code`](Self::code) is
/// the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad flags or arguments (exit 2).
    Usage(#[from] UsageError),
    /// What the user named cannot be entered.
    Resolve(#[from] ResolveError),
    /// `install` or `uninstall` failed.
    Install(#[from] InstallError),
    /// The session with the agent broke on this side.
    Session(#[from] SessionError),
    /// Something local failed: stdout, a thread, signals, encoding.
    Local(#[from] LocalError),
    /// Who is inside cannot be told, or the session to end is not there.
    Live(#[from] LiveError),
    /// A recording streamed by the agent cannot be played.
    Replay(#[from] ReplayError),
    /// The API server refused or failed `what`.
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The agent answered with an error status.
    Agent(Box<tonic::Status>),
    /// The connection to the agent broke while a session ran; `direct`:
    /// reached with `--agent` rather than through a port-forward.
    BrokenSession {
        status: Box<tonic::Status>,
        direct: bool,
    },
    /// The agent, or the way to it, could not be reached or used.
    Transport(#[from] TransportError),
    /// No answer within `after` (the agent's answer timeout); `reaching`:
    /// while the target was still being reached.
    Silent {
        reaching: bool,
        after: std::time::Duration,
    },
}

impl Failure {
    /// The exit code this failure ends the command with.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_)
            | Failure::Install(InstallError::NamespaceTaken { .. })
            | Failure::Transport(TransportError::BadAddress { .. } | TransportError::InvalidAddress { .. }) => {
                USAGE
            }
            _ => FAILURE,
        }
    }

    /// The failure in words, its parts apart.
    fn worded(&self) -> Worded {
        match self {
            Failure::Usage(e) => Worded::own(e, e.hints()),
            Failure::Resolve(e) => Worded::own(e, e.hints()),
            Failure::Install(e) => Worded::own(e, e.hints()),
            Failure::Session(e) => Worded::own(e, e.hints()),
            Failure::Local(e) => Worded::own(e, Vec::new()),
            Failure::Live(e) => Worded::own(e, e.hints()),
            Failure::Replay(e) => Worded::own(e, e.hints()),
            Failure::Api { what, source } => wording::api(what, source),
            Failure::Agent(s) => wording::status(s),
            Failure::BrokenSession { status, direct } => wording::broken_session(status, *direct),
            Failure::Transport(e) => wording::transport(e),
            Failure::Silent { reaching, after } => wording::silent(*reaching, *after),
        }
    }

    /// What happened, without the hints: one row of a many-target report.
    pub fn summary(&self) -> String {
        self.worded().summary
    }

    /// The lines after the summary: `Hint:` lines, with the commands of a
    /// grant.
    pub fn hints(&self) -> Vec<String> {
        self.worded().lines
    }

    /// The summary and the hint lines on one line (`; ` between them), for
    /// one node's entry of a many-node report.
    pub fn compact(&self) -> String {
        let Worded { summary, lines } = self.worded();
        std::iter::once(summary)
            .chain(lines)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Worded { summary, lines } = self.worded();
        f.write_str(&summary)?;
        lines.iter().try_for_each(|line| write!(f, "\n{line}"))
    }
}

/// Words an API error for the user; `what` says what was being attempted.
pub fn api_failure(what: &str, e: kube::Error) -> Failure {
    Failure::Api {
        what: what.to_owned(),
        source: e,
    }
}

/// A gRPC error status from the agent.
pub fn status_failure(s: &tonic::Status) -> Failure {
    Failure::Agent(Box::new(s.clone()))
}

/// The loss of the agent's connection while a session runs (`s` came from
/// the transport, not from the agent): the agent answered as one, so it was
/// the agent, and it went away. `direct`: reached with `--agent` rather
/// than through a port-forward to its pod.
pub fn broken_session(s: &tonic::Status, direct: bool) -> Failure {
    Failure::BrokenSession {
        status: Box::new(s.clone()),
        direct,
    }
}

/// No answer within the answer timeout. While the target is still being
/// reached (`reaching`: looked up through the API server, then the
/// port-forward opened) the agent may never have been asked.
pub fn silent(reaching: bool, after: std::time::Duration) -> Failure {
    Failure::Silent { reaching, after }
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_answer_is_named_as_no_agent() {
        let s = tonic::Status::unknown("grpc-status header missing, mapped from HTTP status code 404");
        let f = status_failure(&s);
        assert!(f.to_string().contains("not as a kubectl-ns agent"), "{}", f);
        assert!(!f.to_string().contains("upgrade"), "{}", f);
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
        assert_eq!(
            wording::chain(&top),
            "tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn api_errors_say_the_servers_words() {
        let status =
            kube::core::Status::failure("etcdserver: request timed out", "InternalError").with_code(500);
        let f = api_failure("cannot get pod default/web", kube::Error::Api(status.boxed()));
        assert_eq!(f.code(), FAILURE);
        assert_eq!(
            f.to_string(),
            "cannot get pod default/web: etcdserver: request timed out (500 InternalError)"
        );
        let status = kube::core::Status::failure("pods \"a\" is forbidden", "Forbidden").with_code(403);
        let f = api_failure("cannot list pods", kube::Error::Api(status.boxed()));
        assert!(
            f.to_string().contains("Hint:") && f.to_string().contains("kubectl-ns-user"),
            "{}",
            f.to_string()
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
        assert_eq!(f.code(), FAILURE);
        assert!(
            f.to_string().starts_with(
                "cannot get pod fx/web: the API server rejected the kubeconfig's credentials (401 Unauthorized)\n\
                 Hint: an expired token is the usual cause: log in again or get a new token"
            ) && f.to_string().contains("kubectl create token")
                && f.to_string().contains("kubectl config view --minify"),
            "{}",
            f.to_string()
        );
        let f = api_failure(
            "cannot get pod fx/web",
            recorded(include_str!(
                "../../../tests/fixtures/kube-v1.32/status-403-get-pod.json"
            )),
        );
        assert!(
            f.to_string().starts_with(
                "cannot get pod fx/web: forbidden: pods \"web\" is forbidden: User \"system:serviceaccount:fx:reader\" \
                 cannot get resource \"pods\" in API group \"\" in the namespace \"fx\"\nHint:"
            ) && f.to_string().contains("kubectl-ns-user"),
            "{}",
            f.to_string()
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
            f.to_string()
                .contains("cannot create resource \"pods/portforward\"")
                && f.to_string().contains("kubectl-ns-user"),
            "{}",
            f.to_string()
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
        assert_eq!(f.code(), FAILURE);
        assert!(
            f.to_string().starts_with(
                "the API server rejected the token: invalid bearer token\nHint: your credentials were rejected; \
                 an expired token is the usual cause"
            ) && f.to_string().contains("kubectl create token"),
            "{}",
            f.to_string()
        );
        // Nothing was rejected when there was nothing to check.
        let f = status_failure(&tonic::Status::unauthenticated("no bearer token"));
        assert!(!f.to_string().contains("expired"), "{}", f);
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
            f.to_string()
                .contains("kubectl -n kubectl-ns-system describe pod agent-1"),
            "{}",
            f.to_string()
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
            f.to_string()
                .starts_with("alice may not create pods/exec on pod default/web\n"),
            "{}",
            f.to_string()
        );
        assert!(
            f.to_string().contains(
                "kubectl create role kubectl-ns-pods-create-exec --verb=create --resource=pods/exec --namespace default"
            ) && f.to_string().contains(
                "kubectl create rolebinding kubectl-ns-pods-create-exec-alice --role=kubectl-ns-pods-create-exec --user=alice --namespace default"
            ),
            "{}",
            f.to_string()
        );
        let f = denied(
            serde_json::json!({"user": "system:serviceaccount:ops:bot", "verb": "create", "group": "kubectl-ns.io",
                "resource": "nodes", "subresource": "exec", "name": "n1"}),
            "no",
        );
        assert!(
            f.to_string().contains(
                "kubectl create clusterrolebinding kubectl-ns-node-admin-system-serviceaccount-ops-bot \
                 --clusterrole=kubectl-ns-node-admin --serviceaccount=ops:bot"
            ),
            "{}",
            f.to_string()
        );
        let f = denied(
            serde_json::json!({"user": "bob", "verb": "delete", "group": "kubectl-ns.io",
                "resource": "nodes", "subresource": "sessions", "name": "n1"}),
            "bob may not delete nodes/sessions (API group kubectl-ns.io) on node n1",
        );
        assert!(
            f.to_string().contains(
                "kubectl create clusterrolebinding kubectl-ns-session-admin-bob \
                 --clusterrole=kubectl-ns-session-admin --user=bob"
            ),
            "{}",
            f.to_string()
        );
        // Refusals without a rule (a non-root unix peer) get no misleading hint.
        let f = denied(serde_json::json!({"user": "unix:uid:1000"}), "no");
        assert_eq!(f.to_string(), "no");
        // The agent's own lack of privilege is another matter.
        let f = status_failure(&tonic::Status::permission_denied("setns: EPERM"));
        assert!(f.to_string().contains("CAP_SYS_ADMIN"), "{}", f);
    }

    #[test]
    fn the_summary_the_hints_and_the_message_are_one_wording() {
        let f = Failure::from(UsageError::NamespaceOfNoPod {
            namespace: "prod".into(),
            target: "pid/42".into(),
        });
        assert_eq!(f.code(), USAGE);
        assert_eq!(
            f.summary(),
            "--namespace prod names a pod's namespace, and pid/42 is not a pod: pid/, container/ and node each \
             name one thing on the agent's node, whichever namespace its pod is in."
        );
        assert_eq!(f.hints(), ["Hint: drop --namespace, or name the pod (NS/POD)"]);
        assert_eq!(f.to_string(), format!("{}\n{}", f.summary(), f.hints()[0]));
        assert_eq!(f.compact(), format!("{}; {}", f.summary(), f.hints()[0]));
        // The agent's own message may run over lines: its first is the
        // summary, the others come before kubectl-ns's hint.
        let f = status_failure(&tonic::Status::unavailable("cri: down\nHint: restart containerd"));
        assert_eq!(f.summary(), "cri: down");
        assert_eq!(
            f.to_string(),
            "cri: down\nHint: restart containerd\nHint: the agent or the node's container runtime is not answering"
        );
        assert_eq!(
            f.compact(),
            "cri: down; Hint: restart containerd; Hint: the agent or the node's container runtime is not answering"
        );
    }

    #[test]
    fn a_taken_namespace_is_a_usage_error() {
        let f = Failure::from(InstallError::NamespaceTaken {
            namespace: "default".into(),
            label: "pod-security.kubernetes.io/enforce=privileged".into(),
            default: "kubectl-ns-system",
        });
        assert_eq!(f.code(), USAGE);
        let f = Failure::from(InstallError::Manifests("x".into()));
        assert_eq!(f.code(), FAILURE);
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
