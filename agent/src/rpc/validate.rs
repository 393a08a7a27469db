//! Checking a client's request into a typed one before anything runs: the
//! rest of the agent gets a [`Target`] and an [`Request`] it can
//! trust.

use std::collections::BTreeMap;

use kns_proto::agent::ExecStart;
use kns_proto::agent::target::Kind;

use crate::enter::error::NsenterError;
use crate::enter::nsenter;
use crate::enter::request::{Request, ToolSource};
use crate::kernel::ns::{self, NsSet};
use crate::status::AgentError;
use crate::target::resolve::Target;

/// The target a request names, its container ID checked.
pub(super) fn target_of(t: Option<kns_proto::agent::Target>) -> Result<Target, AgentError> {
    match t.and_then(|t| t.kind) {
        Some(Kind::ContainerId(id)) => {
            let id = id.trim();
            crate::target::cgroup_scan::check_id(id).map_err(AgentError::BadRequest)?;
            Ok(Target::Container(id.to_owned()))
        }
        Some(Kind::Pid(p)) => Ok(Target::Pid(p)),
        Some(Kind::Node(_)) => Ok(Target::Node),
        None => Err(AgentError::BadRequest(
            "no target: give a container ID, a PID, or the node".into(),
        )),
    }
}

/// Checks a start message into a typed request before anything runs.
pub(super) fn validate(start: ExecStart) -> Result<(Target, Request), AgentError> {
    let target = target_of(start.target)?;
    let mut namespaces = NsSet::default();
    for n in start.namespaces {
        namespaces.insert(
            ns::kind_from_proto(n)
                .ok_or_else(|| AgentError::BadRequest(format!("unknown namespace kind {n}")))?,
        );
    }
    let window = start.window.map(|w| {
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        (clamp(w.rows), clamp(w.cols))
    });
    let req = Request {
        namespaces,
        argv: start.argv,
        env: start.env.into_iter().collect::<BTreeMap<_, _>>(),
        workdir: Some(start.workdir).filter(|w| !w.is_empty()),
        tty: start.tty,
        stdin: start.stdin,
        mount_proc: !start.no_mount_proc,
        all: start.all,
        window,
        privileged: start.privileged,
        tools: ToolSource::try_from(start.tools)
            .map_err(|_| AgentError::BadRequest(format!("unknown tool source {}", start.tools)))?,
    };
    nsenter::check_request(&req)?;
    let strings = req
        .argv
        .iter()
        .chain(req.env.keys())
        .chain(req.env.values())
        .chain(&req.workdir);
    if strings.into_iter().any(|s| s.contains('\0')) {
        return Err(NsenterError::Nul.into());
    }
    Ok((target, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ns::NsKind;
    use kns_proto::agent::Namespace as Pb;
    use tonic::Status;

    fn start(ns: Vec<Pb>, argv: &[&str]) -> ExecStart {
        ExecStart {
            target: Some(kns_proto::agent::Target {
                kind: Some(Kind::Pid(1)),
            }),
            namespaces: ns.into_iter().map(|n| n as i32).collect(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_rejects_bad_requests_with_argument_errors() {
        for s in [
            start(vec![], &["true"]),
            start(vec![Pb::Net], &[]),
            start(vec![Pb::Net], &[""]),
            ExecStart {
                target: None,
                ..start(vec![Pb::Net], &["true"])
            },
            start(vec![Pb::Net, Pb::Unspecified], &["true"]),
            ExecStart {
                namespaces: vec![99],
                ..start(vec![], &["true"])
            },
        ]
        .into_iter()
        .chain(
            ["", "../../etc", "abcd/x", "abc", &"a".repeat(65)].map(|id| ExecStart {
                target: Some(kns_proto::agent::Target {
                    kind: Some(Kind::ContainerId(id.to_owned())),
                }),
                ..start(vec![Pb::Net], &["true"])
            }),
        ) {
            let status: Status = validate(s).unwrap_err().into();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        }
        let (t, r) = validate(start(vec![Pb::Net, Pb::Pid], &["ss"])).unwrap();
        assert_eq!(t, Target::Pid(1));
        assert!(r.namespaces.contains(NsKind::Net) && r.namespaces.contains(NsKind::Pid));
        assert!(r.mount_proc);
        assert_eq!(r.tool_source(), "node");
    }

    #[test]
    fn the_agents_tools_are_validated_and_named() {
        let agent = |ns| ExecStart {
            tools: ToolSource::Agent as i32,
            ..start(ns, &["ss"])
        };
        let (_, r) = validate(agent(vec![Pb::Net, Pb::Pid])).unwrap();
        assert_eq!(r.tool_source(), "agent");
        // The mount namespace is where the agent's tools come from.
        let status: Status = validate(agent(vec![Pb::Net, Pb::Mnt])).unwrap_err().into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("pick one"), "{status:?}");
        let status: Status = validate(ExecStart {
            tools: 9,
            ..start(vec![Pb::Net], &["ss"])
        })
        .unwrap_err()
        .into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let (_, r) = validate(start(vec![Pb::Mnt], &["ls"])).unwrap();
        assert_eq!(r.tool_source(), "target");
    }

    fn any_target() -> impl proptest::strategy::Strategy<Value = Option<kns_proto::agent::Target>> {
        use proptest::prelude::*;
        proptest::option::of(prop_oneof![
            "\\PC{0,70}".prop_map(Kind::ContainerId),
            any::<i32>().prop_map(Kind::Pid),
            Just(Kind::Node(kns_proto::agent::Node {})),
        ])
        .prop_map(|kind| Some(kns_proto::agent::Target { kind }))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever a client sends, validation answers with a typed request
        /// or an argument error, and what it lets through is well formed.
        #[test]
        fn any_start_message_is_validated_or_refused(
            target in any_target(),
            namespaces in proptest::collection::vec(-2i32..12, 0..10),
            argv in proptest::collection::vec("\\PC{0,8}|\\x00", 0..4),
            workdir in "\\PC{0,8}",
            tty: bool, stdin: bool, all: bool,
            tools in -1i32..3,
        ) {
            let start = ExecStart { target, namespaces, argv, workdir, tty, stdin, all, tools, ..Default::default() };
            match validate(start) {
                Ok((target, req)) => {
                    proptest::prop_assert!(!req.namespaces.is_empty());
                    proptest::prop_assert!(
                        req.tools != ToolSource::Agent
                            || !(req.namespaces.contains(NsKind::Mnt) || req.namespaces.contains(NsKind::User))
                    );
                    proptest::prop_assert!(!req.argv[0].is_empty());
                    proptest::prop_assert!(req.argv.iter().all(|a| !a.contains('\0')));
                    if let Target::Container(id) = target {
                        proptest::prop_assert!(crate::target::cgroup_scan::check_id(&id).is_ok());
                    }
                }
                Err(e) => {
                    proptest::prop_assert_eq!(Status::from(e).code(), tonic::Code::InvalidArgument);
                }
            }
        }
    }
}
