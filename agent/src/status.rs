//! The agent's errors, a request's and a running session's, and the one
//! function that turns them into a `tonic::Status` with a deliberate code
//! and the trailers the plugin reads.

use crate::access::authn::AuthnError;
use crate::access::authz::AuthzError;
use crate::enter::error::NsenterError;
use crate::kernel::procfs::ProcError;
use crate::metrics::DenialKind;
use crate::record::{LookupError, StoreError};
use crate::target::cri::CriError;
use crate::target::resolve::ResolveError;
use tonic::Status;

/// Every failure a request, or a session once running, can meet.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Nsenter(#[from] NsenterError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error(transparent)]
    Policy(#[from] crate::access::policy::Denied),
    #[error(
        "the agent on this node already runs {0} sessions, its limit (--max-sessions, KNS_MAX_SESSIONS): retry \
         when some have ended"
    )]
    SessionLimit(u32),
    #[error(
        "the exec request is over the agent's limit of {} KiB for one message: pass fewer or shorter arguments \
         and environment variables",
        kns_proto::MAX_MESSAGE >> 10
    )]
    StartTooLarge,
    #[error("the first message of an exec stream must be `start`")]
    NotStart,
    #[error("no session {0} runs on this agent: `kubectl ns sessions` lists those that do")]
    NoSession(u64),
    /// The stream itself failed before the request was read: its status
    /// is passed on as it is.
    #[error("{}", .0.message())]
    Stream(Status),
    /// The policy records the session, and its recording cannot be made:
    /// closed, as an unrecorded session the operator asked to record would
    /// be a hole in the record.
    #[error(
        "the node's kubectl-ns policy records this session (recording), but the agent cannot: {0}; the session \
         was not started (the node's operator can fix the directory or the policy)"
    )]
    Recording(#[from] crate::record::StoreError),
    /// A recording asked for (Replay) that cannot be read.
    #[error(transparent)]
    Replay(#[from] crate::record::LookupError),
    #[error(
        "the agent is shutting down (SIGTERM): the session was ended and its processes were killed; run the \
         command again once the agent is back"
    )]
    Shutdown,
    /// A session asked for while the agent stops: none starts then, as the
    /// node reference may be gone and its PID another process's.
    #[error(
        "the agent is stopping (SIGTERM, or its node reference process exited): no session starts now; run \
         the command again once the agent is back"
    )]
    Stopping,
    #[error(
        "the session reached the agent's maximum age of {0} s (--max-session-age): it was ended and its \
         processes were killed"
    )]
    Expired(u64),
    #[error(
        "the client sent a message over the agent's limit of {} KiB: the session was ended and its processes \
         were killed (kubectl-ns sends stdin in smaller chunks; another client must too)",
        kns_proto::MAX_MESSAGE >> 10
    )]
    Oversized,
    #[error(
        "the agent lost track of the tool's process (the agent's log says why): the session was ended and \
         its processes were killed; run the command again"
    )]
    Lost,
    /// Someone ended the session with `kubectl ns sessions kill`: the
    /// plugin's exec prints these words as they are.
    #[error("session ended by {by} (kubectl ns sessions kill): its processes were killed")]
    Killed { by: String },
    /// The tool exited (`exit`, as the agent logs it) but the client took
    /// none of its remaining output for `stalled` seconds.
    #[error(
        "the tool exited ({exit}), but the client took none of its remaining output for {stalled} s; the rest \
         was dropped"
    )]
    OutputDropped { exit: String, stalled: u64 },
    #[error(
        "the agent ended the session without the tool's exit status, so its output may be incomplete (an \
         agent fault: the agent's log says more); run the command again"
    )]
    NoExitStatus,
}

impl AgentError {
    /// How `denials_total` counts this error, when it is a refusal: its
    /// kind and the rule's short name, never the words of the request.
    pub fn denial(&self) -> Option<(DenialKind, &'static str)> {
        use crate::access::policy::Denied;
        let authn = |rule| Some((DenialKind::Authn, rule));
        let authz = |rule| Some((DenialKind::Authz, rule));
        match self {
            AgentError::Authn(e) => match e {
                AuthnError::NoToken => authn("noToken"),
                AuthnError::Malformed => authn("malformedHeader"),
                AuthnError::Rejected { .. } => authn("tokenRejected"),
                AuthnError::NoCertificate(_) => authn("noCertificate"),
                AuthnError::NoPeercred => authn("noPeerCredentials"),
                AuthnError::Review(_) => authn("reviewFailed"),
            },
            AgentError::Authz(e) => match e {
                AuthzError::Denied { rule, .. } => authz(rule.short_name()),
                AuthzError::NoNodeName { .. } => authz("noNodeName"),
                AuthzError::NotRoot { .. } => authz("unixSocketRoot"),
                AuthzError::Review(_) => authz("reviewFailed"),
            },
            AgentError::Policy(d @ (Denied::PerUser(_) | Denied::PerNode(_))) => {
                Some((DenialKind::Limit, d.rule()))
            }
            AgentError::Policy(d) => Some((DenialKind::Policy, d.rule())),
            AgentError::SessionLimit(_) => Some((DenialKind::Limit, "agentMaxSessions")),
            AgentError::Nsenter(
                NsenterError::NoIdentity { .. } | NsenterError::IdentityNeedsUserNs { .. },
            ) => Some((DenialKind::Policy, "containerIdentity")),
            AgentError::Nsenter(NsenterError::Seccomp(_)) => Some((DenialKind::Policy, "seccomp")),
            _ => None,
        }
    }
}

fn io_code(err: &std::io::Error) -> tonic::Code {
    match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => tonic::Code::PermissionDenied,
        Some(libc::ENOENT | libc::ESRCH) => tonic::Code::FailedPrecondition,
        _ => tonic::Code::Internal,
    }
}

fn proc_code(p: &ProcError) -> tonic::Code {
    match p {
        ProcError::NoSuchProcess { .. } => tonic::Code::NotFound,
        ProcError::Read { source, .. } => io_code(source),
        ProcError::Parse { .. } => tonic::Code::Internal,
    }
}

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Status {
        if let AgentError::Stream(s) = e {
            return s;
        }
        let msg = e.to_string();
        let code = match &e {
            AgentError::Stream(_) => unreachable!("returned above"),
            AgentError::StartTooLarge => tonic::Code::OutOfRange,
            AgentError::NotStart => tonic::Code::InvalidArgument,
            AgentError::Shutdown | AgentError::Stopping => tonic::Code::Unavailable,
            AgentError::Recording(StoreError::Full { .. }) => tonic::Code::ResourceExhausted,
            AgentError::Recording(StoreError::Io { .. }) => tonic::Code::FailedPrecondition,
            AgentError::Replay(r) => match r {
                LookupError::BadName(_) => tonic::Code::InvalidArgument,
                LookupError::NotFound { .. } => tonic::Code::NotFound,
                LookupError::NotAFile { .. } => tonic::Code::FailedPrecondition,
                LookupError::Io(StoreError::Io { source, .. }) => io_code(source),
                LookupError::Io(StoreError::Full { .. }) => tonic::Code::Internal,
            },
            AgentError::Expired(_) => tonic::Code::DeadlineExceeded,
            AgentError::Oversized => tonic::Code::OutOfRange,
            AgentError::Lost | AgentError::NoExitStatus => tonic::Code::Internal,
            AgentError::OutputDropped { .. } => tonic::Code::DataLoss,
            AgentError::NoSession(_) => tonic::Code::NotFound,
            AgentError::Killed { .. } => tonic::Code::Aborted,
            AgentError::BadRequest(_) => tonic::Code::InvalidArgument,
            AgentError::Internal(_) => tonic::Code::Internal,
            AgentError::Proc(p) => proc_code(p),
            AgentError::Authn(AuthnError::Review(_)) | AgentError::Authz(AuthzError::Review(_)) => {
                tonic::Code::Unavailable
            }
            AgentError::Authn(_) => tonic::Code::Unauthenticated,
            AgentError::Authz(_) => tonic::Code::PermissionDenied,
            AgentError::Policy(
                crate::access::policy::Denied::PerUser(_) | crate::access::policy::Denied::PerNode(_),
            ) => tonic::Code::ResourceExhausted,
            AgentError::Policy(_) => tonic::Code::PermissionDenied,
            AgentError::SessionLimit(_) => tonic::Code::ResourceExhausted,
            AgentError::Resolve(r) => match r {
                ResolveError::Proc(p) => proc_code(p),
                ResolveError::BadPid { .. } => tonic::Code::InvalidArgument,
                ResolveError::ContainerNotFound { .. } | ResolveError::Cri(CriError::NotFound { .. }) => {
                    tonic::Code::NotFound
                }
                ResolveError::Cri(CriError::Ambiguous { .. }) => tonic::Code::InvalidArgument,
                ResolveError::Cri(CriError::Unavailable { .. } | CriError::NoRuntime { .. }) => {
                    tonic::Code::Unavailable
                }
                ResolveError::Cri(CriError::Call { .. }) => tonic::Code::Internal,
                ResolveError::Cri(CriError::NotRunning { .. } | CriError::NoPid { .. })
                | ResolveError::Exited { .. }
                | ResolveError::Replaced { .. }
                | ResolveError::LeftContainer { .. } => tonic::Code::FailedPrecondition,
                ResolveError::Pidfd { source, .. } => io_code(source),
            },
            AgentError::Nsenter(n) => match n {
                NsenterError::EmptyCommand
                | NsenterError::NoNamespace
                | NsenterError::Nul
                | NsenterError::AgentToolsWithMntOrUser => tonic::Code::InvalidArgument,
                NsenterError::Unsupported { .. }
                | NsenterError::NoIdentity { .. }
                | NsenterError::IdentityNeedsUserNs { .. }
                | NsenterError::Seccomp(_) => tonic::Code::FailedPrecondition,
                NsenterError::Proc(p) => proc_code(p),
                NsenterError::Open { source, .. } | NsenterError::Setup { source, .. } => io_code(source),
                NsenterError::Child { errno, .. } => io_code(&std::io::Error::from_raw_os_error(*errno)),
                NsenterError::Exec { .. } | NsenterError::NodeMoved(_) => tonic::Code::FailedPrecondition,
            },
        };
        let mut status = Status::new(code, msg);
        // Marks the authorizer's refusals (apart from the agent's own lack
        // of privilege), naming the missing rule when there is one.
        let denied = match &e {
            AgentError::Authz(a) => denied_rule(a),
            _ => None,
        };
        if let Some(v) = denied.and_then(|v| v.to_string().parse().ok()) {
            status.metadata_mut().insert(kns_proto::DENIED_RULE_HEADER, v);
        }
        if let AgentError::Authn(AuthnError::Rejected { .. }) = &e {
            status.metadata_mut().insert(
                kns_proto::TOKEN_REJECTED_HEADER,
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        if let AgentError::Policy(d) = &e {
            status.metadata_mut().insert(
                kns_proto::POLICY_HEADER,
                tonic::metadata::MetadataValue::from_static(d.rule()),
            );
        }
        status
    }
}

/// The `kns-denied-rule` value of an authorizer's refusal: the missing rule
/// and the user, or the user alone when no rule applies; `None` when the
/// review itself failed.
pub fn denied_rule(e: &AuthzError) -> Option<serde_json::Value> {
    match e {
        AuthzError::Denied { user, rule, .. } => {
            let mut v = serde_json::to_value(rule).expect("rules serialize");
            v["user"] = user.as_str().into();
            Some(v)
        }
        AuthzError::NotRoot { username: user } | AuthzError::NoNodeName { user } => {
            Some(serde_json::json!({ "user": user }))
        }
        AuthzError::Review(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ns::NsSet;

    #[test]
    fn status_codes_are_deliberate() {
        let cases: Vec<(AgentError, tonic::Code)> = vec![
            (ProcError::NoSuchProcess { pid: 9 }.into(), tonic::Code::NotFound),
            (
                ResolveError::Exited { pid: 9 }.into(),
                tonic::Code::FailedPrecondition,
            ),
            (
                ResolveError::Cri(CriError::NotRunning {
                    id: "a".into(),
                    state: "EXITED".into(),
                    reason: String::new(),
                })
                .into(),
                tonic::Code::FailedPrecondition,
            ),
            (
                ResolveError::ContainerNotFound {
                    id: "a".into(),
                    cri: "x".into(),
                }
                .into(),
                tonic::Code::NotFound,
            ),
            (
                NsenterError::Child {
                    stage: crate::sys::Stage::Setns,
                    errno: libc::EPERM,
                    namespaces: NsSet::default(),
                    pid: 1,
                }
                .into(),
                tonic::Code::PermissionDenied,
            ),
            (
                LookupError::BadName("../etc/passwd".into()).into(),
                tonic::Code::InvalidArgument,
            ),
            (
                LookupError::NotFound { wanted: "7".into() }.into(),
                tonic::Code::NotFound,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(e).code(), code);
        }
    }

    /// The plugin words a session's end by these codes, and users read the
    /// words: both stay as they were when sessions built them by hand.
    #[test]
    fn a_sessions_ends_keep_their_codes_and_words() {
        let cases = [
            (
                AgentError::Shutdown,
                tonic::Code::Unavailable,
                "the agent is shutting down (SIGTERM): the session was ended and its processes were killed; run \
                 the command again once the agent is back",
            ),
            (
                AgentError::Expired(30),
                tonic::Code::DeadlineExceeded,
                "the session reached the agent's maximum age of 30 s (--max-session-age): it was ended and its \
                 processes were killed",
            ),
            (
                AgentError::Oversized,
                tonic::Code::OutOfRange,
                "the client sent a message over the agent's limit of 1024 KiB: the session was ended and its \
                 processes were killed (kubectl-ns sends stdin in smaller chunks; another client must too)",
            ),
            (
                AgentError::Lost,
                tonic::Code::Internal,
                "the agent lost track of the tool's process (the agent's log says why): the session was ended \
                 and its processes were killed; run the command again",
            ),
            (
                AgentError::OutputDropped {
                    exit: "Code(0)".into(),
                    stalled: 10,
                },
                tonic::Code::DataLoss,
                "the tool exited (Code(0)), but the client took none of its remaining output for 10 s; the rest \
                 was dropped",
            ),
            (
                AgentError::Killed { by: "carol".into() },
                tonic::Code::Aborted,
                "session ended by carol (kubectl ns sessions kill): its processes were killed",
            ),
            (
                AgentError::NoExitStatus,
                tonic::Code::Internal,
                "the agent ended the session without the tool's exit status, so its output may be incomplete \
                 (an agent fault: the agent's log says more); run the command again",
            ),
        ];
        for (e, code, words) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, words));
        }
    }

    #[test]
    fn refusals_are_counted_by_kind_and_rule_name_never_by_who() {
        use crate::access::authz::Rule;
        use crate::access::policy::Denied;
        let denied = |rule: Rule| {
            AgentError::from(AuthzError::Denied {
                user: "mallory".into(),
                rule: Box::new(rule),
                reason: String::new(),
                why: String::new(),
            })
        };
        let cases: Vec<(AgentError, Option<(DenialKind, &str)>)> = vec![
            (AuthnError::NoToken.into(), Some((DenialKind::Authn, "noToken"))),
            (
                denied(Rule::pod_exec("ns", "web-1")),
                Some((DenialKind::Authz, "podsExec")),
            ),
            (
                denied(Rule::node_exec("node-1")),
                Some((DenialKind::Authz, "nodesExec")),
            ),
            (denied(Rule::pods_list()), Some((DenialKind::Authz, "podsList"))),
            (
                AuthzError::NotRoot {
                    username: "uid 1000".into(),
                }
                .into(),
                Some((DenialKind::Authz, "unixSocketRoot")),
            ),
            (
                Denied::Command("/tmp/evil".into(), "ss".into()).into(),
                Some((DenialKind::Policy, "commands")),
            ),
            (
                Denied::PerUser(2).into(),
                Some((DenialKind::Limit, "maxSessionsPerUser")),
            ),
            (
                AgentError::SessionLimit(128),
                Some((DenialKind::Limit, "agentMaxSessions")),
            ),
            (
                NsenterError::NoIdentity { pid: 7 }.into(),
                Some((DenialKind::Policy, "containerIdentity")),
            ),
            // Failures are not refusals.
            (ProcError::NoSuchProcess { pid: 9 }.into(), None),
            (AgentError::Internal("x".into()), None),
        ];
        for (e, want) in cases {
            let got = e.denial();
            assert_eq!(got, want, "{e}");
            if let Some((_, rule)) = got {
                assert!(
                    !["mallory", "web-1", "node-1", "evil"]
                        .iter()
                        .any(|w| rule.contains(w)),
                    "{rule}"
                );
            }
        }
        for rule in [
            Rule::pod_exec("a", "b"),
            Rule::pod_get("a", "b"),
            Rule::node_exec("n"),
            Rule::node_get("n"),
            Rule::node_recordings("n"),
            Rule::pods_list(),
        ] {
            assert_ne!(rule.short_name(), "other", "{rule}");
        }
    }

    #[test]
    fn refusals_are_coded_and_name_the_missing_rule() {
        let denied = Status::from(AgentError::from(AuthzError::Denied {
            user: "bob".into(),
            rule: Box::new(crate::access::authz::Rule::pod_exec("default", "web")),
            reason: String::new(),
            why: String::new(),
        }));
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "bob may not create pods/exec on pod default/web"
        );
        let rule: serde_json::Value = serde_json::from_str(
            denied
                .metadata()
                .get(kns_proto::DENIED_RULE_HEADER)
                .unwrap()
                .to_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rule["user"], "bob");
        assert_eq!(
            (&rule["resource"], &rule["subresource"]),
            (&"pods".into(), &"exec".into())
        );
        for refused in [
            AuthnError::NoToken,
            AuthnError::Rejected {
                error: "invalid bearer token".into(),
            },
        ] {
            let rejected = matches!(refused, AuthnError::Rejected { .. });
            let unauthenticated = Status::from(AgentError::from(refused));
            assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
            // Only a token the API server refused is one to renew.
            assert_eq!(
                unauthenticated
                    .metadata()
                    .get(kns_proto::TOKEN_REJECTED_HEADER)
                    .is_some(),
                rejected
            );
        }
        let unavailable = Status::from(AgentError::from(AuthnError::Review(
            crate::access::kubeclient::KubeError::NotConfigured,
        )));
        assert_eq!(unavailable.code(), tonic::Code::Unavailable);
    }
}
