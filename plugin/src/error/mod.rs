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
//! A [`Failure`] says where it came from (a usage error, the API server,
//! the agent's status, the transport, a timeout); it becomes an exit code
//! ([`Failure::code`]) and a message (its `Display`, worded in `wording`,
//! with the `kubectl create rolebinding` hints of `grant`) once, at the
//! edge: `main`, or a row of a many-target report.
mod grant;
mod transport;
mod wording;

pub use grant::grant_for;
pub use transport::TransportError;
pub use wording::set_api_server;

/// Usage errors.
pub const USAGE: u8 = 2;
/// kubectl-ns's own failures.
pub const FAILURE: u8 = 255;

/// What ended a command, by where it came from. Its `Display` is the
/// message for the user (with a hint line where one helps); [`code`]
/// (Self::code) the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad flags or arguments, said where they were checked (exit 2).
    #[error("{0}")]
    Usage(String),
    /// kubectl-ns's own failure, said where it was found.
    #[error("{0}")]
    Own(String),
    /// The API server refused or failed `what`.
    #[error("{}", wording::api(what, source))]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The agent answered with an error status.
    #[error("{}", wording::status(.0))]
    Agent(Box<tonic::Status>),
    /// The connection to the agent broke while a session ran; `direct`:
    /// reached with `--agent` rather than through a port-forward.
    #[error("{}", wording::broken_session(status, *direct))]
    BrokenSession {
        status: Box<tonic::Status>,
        direct: bool,
    },
    /// The agent, or the way to it, could not be reached or used.
    #[error("{}", wording::transport(.0))]
    Transport(#[from] TransportError),
    /// No answer within `after` (the agent's answer timeout); `reaching`:
    /// while the target was still being reached.
    #[error("{}", wording::silent(*reaching, *after))]
    Silent {
        reaching: bool,
        after: std::time::Duration,
    },
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }

    /// A failure of kubectl-ns itself (exit 255).
    pub fn own(message: impl Into<String>) -> Failure {
        Failure::Own(message.into())
    }

    /// The exit code this failure ends the command with.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_)
            | Failure::Transport(TransportError::BadAddress { .. } | TransportError::InvalidAddress { .. }) => {
                USAGE
            }
            _ => FAILURE,
        }
    }

    /// The failure without its hints, for one row of a many-target report:
    /// the message's first line.
    pub fn headline(&self) -> String {
        self.to_string().lines().next().unwrap_or_default().to_owned()
    }

    /// The whole message on one line (`; ` between its lines), for one
    /// node's entry of a many-node report.
    pub fn one_line(&self) -> String {
        self.to_string().replace('\n', "; ")
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
    fn remote_status_maps_like_a_shell() {
        assert_eq!(from_remote(Some(0), None), 0);
        assert_eq!(from_remote(Some(3), None), 3);
        assert_eq!(from_remote(None, Some(2)), 130);
        assert_eq!(from_remote(None, Some(9)), 137);
        assert_eq!(from_remote(None, None), FAILURE);
    }
}
