//! The agent's gRPC service: each RPC's checks in order. Its errors become
//! `tonic::Status` in [`crate::rpc::error`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kns_proto::agent::agent_server::Agent;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::target::Kind;
use kns_proto::agent::{
    ExecRequest, ExecResponse, ExecStart, Exited, InspectRequest, InspectResponse, ListRequest, ListResponse,
    Started, VersionRequest, VersionResponse, exited,
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use crate::access::audit::{self, Audit, Event, Record};
use crate::access::authz::{Access, Action, Subject};
use crate::access::identity::{Caller, Identity, Method};
use crate::access::policy::{Admitted, Ask, Policies};
use crate::enter::cgroup::Containment;
use crate::enter::nsenter::{self, Node, NsenterError};
use crate::kernel::ns::{self, NsKind, NsSet};
use crate::kernel::procfs::{self, ProcError};
use crate::rpc::error::AgentError;
use crate::session::{self, End, Replies};
use crate::sys::ExitStatus;
use crate::sys::spawner::Spawner;
use crate::target::resolve::{self, Resolver, Target};

/// What the agent allows a session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// End sessions after this long.
    pub max_age: Option<std::time::Duration>,
    /// Sessions at once.
    pub max_sessions: u32,
}

/// Who may use the agent, what the node's operator allows, and where what
/// they did is recorded.
#[derive(Debug)]
pub struct Guard {
    pub access: Access,
    pub audit: Audit,
    pub policy: Arc<Policies>,
}

/// The agent service.
#[derive(Debug, Clone)]
pub struct AgentService {
    resolver: Arc<Resolver>,
    node: Node,
    shutdown: watch::Receiver<bool>,
    sessions: Arc<AtomicU64>,
    spawner: Arc<Spawner>,
    /// Where sessions' cgroups are made, and what could not be had.
    containment: Arc<Containment>,
    limits: Limits,
    /// One permit per running session.
    running: Arc<tokio::sync::Semaphore>,
    access: Arc<Access>,
    audit: Arc<Audit>,
    policy: Arc<Policies>,
}

impl AgentService {
    pub fn new(
        resolver: Arc<Resolver>,
        node: Node,
        shutdown: watch::Receiver<bool>,
        spawner: Spawner,
        containment: Containment,
        limits: Limits,
        guard: Guard,
    ) -> Self {
        AgentService {
            resolver,
            node,
            shutdown,
            sessions: Arc::new(AtomicU64::new(0)),
            spawner: Arc::new(spawner),
            containment: Arc::new(containment),
            running: Arc::new(tokio::sync::Semaphore::new(limits.max_sessions as usize)),
            limits,
            access: Arc::new(guard.access),
            audit: Arc::new(guard.audit),
            policy: guard.policy,
        }
    }

    /// What `resolved` is, for the authorizer: a container's pod comes from
    /// the runtime's labels, whatever the client believed.
    fn subject(target: &Target, resolved: &resolve::Resolved) -> Subject {
        match (target, &resolved.pod) {
            (Target::Node, _) => Subject::Node,
            (Target::Container(_), Some(p)) => Subject::Pod {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            },
            _ => Subject::Host,
        }
    }

    fn audit_target(&self, target: &Target, resolved: Option<&resolve::Resolved>) -> audit::Target {
        let pod = resolved.and_then(|r| r.pod.as_ref());
        audit::Target {
            node: self.access.node_name().map(str::to_owned),
            namespace: pod.map(|p| p.namespace.clone()),
            pod: pod.map(|p| p.name.clone()),
            container: resolved.and_then(|r| r.container_id.clone()),
            pid: resolved.map(|r| r.pid),
            requested: target.to_string(),
        }
    }

    /// Writes the `denied` line of a refused request: who asked (absent
    /// when authentication failed), what for, and why.
    fn record_denial(
        &self,
        action: Action,
        target: &Target,
        resolved: Option<&resolve::Resolved>,
        who: Option<(&Identity, Method)>,
        req: Option<&nsenter::Request>,
        e: &AgentError,
    ) {
        let name = action.as_str();
        let mut r = Record::new(Event::Denied, name, self.audit_target(target, resolved));
        r.user = who.map(|(i, _)| i.clone());
        r.auth = who.map(|(_, m)| m);
        if let Some(req) = req {
            r.namespaces = req.namespaces.iter().map(|k| k.proc_name().to_owned()).collect();
            r.argv = req.argv.clone();
            r.env = req.env.keys().cloned().collect();
            r.tty = req.tty;
            r.privileged = req.privileged;
            r.tools = Some(req.tool_source());
        }
        r.reason = Some(e.to_string());
        tracing::warn!(request = name, %target, user = r.user.as_ref().map(|u| u.username.as_str()), reason = ?e.to_string(), "denied");
        self.audit.emit(&r);
    }

    /// Identifies the caller and checks `action` on the resolved target,
    /// recording a denial in the audit trail. A session's request is first
    /// fitted to the target (`-a` without an identity for the image's
    /// binaries), so that the rights checked are those of what will run.
    async fn admit(
        &self,
        caller: &Caller,
        action: Action,
        target: &Target,
        mut req: Option<&mut nsenter::Request>,
    ) -> Result<Admission, AgentError> {
        let deny = |who: Option<(&Identity, Method)>,
                    resolved: Option<&resolve::Resolved>,
                    req: Option<&nsenter::Request>,
                    e: AgentError| {
            self.record_denial(action, target, resolved, who, req, &e);
            e
        };
        let (who, method) = self
            .access
            .identify(caller)
            .await
            .map_err(|e| deny(None, None, req.as_deref(), e.into()))?;
        let resolved = self.resolver.resolve(target).await.map_err(AgentError::from)?;
        let note = match req.as_deref_mut() {
            Some(r) => nsenter::keep_node_filesystem(r, &resolved, self.node)?,
            None => None,
        };
        let req = req.as_deref();
        let subject = Self::subject(target, &resolved);
        self.access
            .authorize(&who, method, action, &subject)
            .await
            .map_err(|e| deny(Some((&who, method)), Some(&resolved), req, e.into()))?;
        // pods/exec is what `kubectl exec` needs: a session that runs as the
        // container (-m, its identity, all its namespaces). A node tool runs
        // as node root wherever it looks, so it needs the node right too;
        // so does one from the agent's image (--tools agent, never with
        // mnt), which runs as node root as well and sees the agent's mounts.
        if let (Subject::Pod { .. }, Some(req)) = (&subject, req)
            && (!req.namespaces.contains(NsKind::Mnt) || req.privileged)
        {
            self.access
                .authorize(&who, method, action, &Subject::NodeTool)
                .await
                .map_err(|e| deny(Some((&who, method)), Some(&resolved), Some(req), e.into()))?;
        }
        // The operator's policy, for sessions: on top of the rights.
        let admitted = match req {
            Some(req) => {
                let ask = Ask {
                    user: &who.username,
                    namespace: resolved.pod.as_ref().map(|p| p.namespace.as_str()),
                    kinds: req.namespaces,
                    argv0: req.argv.first().map_or("", String::as_str),
                    tty: req.tty,
                    stdin: req.stdin,
                    privileged: req.privileged,
                    env: req.env.keys().map(String::as_str).collect(),
                };
                let a = self.policy.admit(&ask);
                Some(a.map_err(|e| deny(Some((&who, method)), Some(&resolved), Some(req), e.into()))?)
            }
            None => None,
        };
        Ok(Admission {
            who,
            method,
            resolved,
            admitted,
            note,
        })
    }
}

/// What `admit` established about a request it let through.
struct Admission {
    who: Identity,
    method: Method,
    resolved: resolve::Resolved,
    /// The policy's admission of a session (its count and age limit).
    admitted: Option<Admitted>,
    /// What the user is told about how the request was fitted to the
    /// target.
    note: Option<String>,
}

fn target_of(t: Option<kns_proto::agent::Target>) -> Result<Target, AgentError> {
    match t.and_then(|t| t.kind) {
        Some(Kind::ContainerId(id)) => {
            let id = id.trim();
            crate::target::cri::check_id(id).map_err(AgentError::BadRequest)?;
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
fn validate(start: ExecStart) -> Result<(Target, nsenter::Request), AgentError> {
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
    let req = nsenter::Request {
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
        tools: nsenter::ToolSource::try_from(start.tools)
            .map_err(|_| AgentError::BadRequest(format!("unknown tool source {}", start.tools)))?,
    };
    if req.argv.first().is_none_or(|a| a.is_empty()) {
        return Err(NsenterError::EmptyCommand.into());
    }
    if req.namespaces.is_empty() {
        return Err(NsenterError::NoNamespace.into());
    }
    if req.tools == nsenter::ToolSource::Agent
        && (req.namespaces.contains(NsKind::Mnt) || req.namespaces.contains(NsKind::User))
    {
        return Err(NsenterError::AgentToolsWithMnt.into());
    }
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

/// Names the agent's version to the client, which warns on a mismatch.
fn versioned<T>(body: T) -> Response<T> {
    let mut r = Response::new(body);
    r.metadata_mut().insert(
        kns_proto::AGENT_VERSION_HEADER,
        tonic::metadata::MetadataValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    r
}

fn exited_reply(code: i32, error: String) -> ExecResponse {
    ExecResponse {
        msg: Some(Out::Exited(Exited {
            status: Some(exited::Status::Code(code)),
            error,
            note: String::new(),
        })),
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    type ExecStream = session::Replies;

    async fn exec(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let caller = Caller::of(&request);
        let mut inbound = request.into_inner();
        let start = match inbound.message().await.map_err(|s| {
            if s.code() == tonic::Code::OutOfRange {
                Status::out_of_range(format!(
                    "the exec request is over the agent's limit of {} KiB for one message: pass fewer or \
                     shorter arguments and environment variables",
                    kns_proto::MAX_MESSAGE >> 10
                ))
            } else {
                s
            }
        })? {
            Some(ExecRequest {
                msg: Some(In::Start(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of an exec stream must be `start`",
                ));
            }
        };
        let (target, mut req) = validate(start)?;
        let Admission {
            who,
            method,
            resolved,
            admitted,
            note,
        } = self.admit(&caller, Action::Exec, &target, Some(&mut req)).await?;
        // Refusals past the authorizer and the policy, in the audit trail as
        // theirs are.
        let refused = |e: AgentError| {
            self.record_denial(
                Action::Exec,
                &target,
                Some(&resolved),
                Some((&who, method)),
                Some(&req),
                &e,
            );
            Status::from(e)
        };
        if req.privileged && req.namespaces.contains(NsKind::Mnt) {
            tracing::warn!(%target, argv = ?req.argv, "--privileged: the target's own binary (-m) runs as root on the node");
        }
        let permit = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused(AgentError::SessionLimit(self.limits.max_sessions)))?;
        let node = self.node;
        let spawn_req = req.clone();
        let r = resolved.clone();
        let session_id = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let spawner = self.spawner.clone();
        let cgroups = self.containment.sessions.clone();
        let spawned = tokio::task::spawn_blocking(move || -> Result<_, AgentError> {
            let pinned = resolve::pin(&r)?;
            let cgroup = cgroups
                .map(|c| c.create(session_id))
                .transpose()
                .map_err(|e| AgentError::Internal(format!("cannot make the session's cgroup: {e}")))?;
            Ok(nsenter::spawn(&pinned, &spawn_req, node, &spawner, cgroup)?)
        })
        .await
        .map_err(|e| Status::internal(format!("spawn task failed: {e}")))?;

        // Few messages in flight per session: with chunks of up to 1 MiB
        // this bounds a session's buffered output to a few MiB. One of
        // them is kept for the session's last message (session::run).
        let (tx, rx) = mpsc::channel(5);
        let mut record = Record::new(Event::Start, "exec", self.audit_target(&target, Some(&resolved)));
        record.session = Some(session_id);
        record.user = Some(who.clone());
        record.auth = Some(method);
        record.namespaces = req.namespaces.iter().map(|k| k.proc_name().to_owned()).collect();
        record.argv = req.argv.clone();
        record.env = req.env.keys().cloned().collect();
        record.tty = req.tty;
        record.privileged = req.privileged;
        record.tools = Some(req.tool_source());
        record.start_time = Some(record.time.clone());
        let spawned = match spawned {
            Ok(s) => s,
            Err(AgentError::Nsenter(NsenterError::Exec { code, message })) => {
                tracing::info!(session = session_id, %target, pid = resolved.pid, namespaces = %req.namespaces,
                    argv = ?req.argv, tools = req.tool_source(), exit = code, error = ?message,
                    "session could not start the tool");
                self.audit.emit(&record);
                record.event = Event::End;
                record.end_time = Some(audit::now());
                record.time = audit::now();
                record.exit_code = Some(code);
                record.end = Some(format!("not started: {message}"));
                self.audit.emit(&record);
                let _ = tx.send(Ok(exited_reply(code, message))).await;
                return Ok(versioned(Replies::new(rx, Arc::new(permit))));
            }
            Err(AgentError::Nsenter(e)) if e.is_refusal() => return Err(refused(e.into())),
            Err(e) => {
                tracing::warn!(session = session_id, %target, pid = resolved.pid, error = %e, "session failed to start");
                return Err(e.into());
            }
        };
        let started = ExecResponse {
            msg: Some(Out::Started(Started {
                pid: spawned.tool.pid,
                target_pid: resolved.pid,
                notices: note.into_iter().chain(spawned.notices.iter().cloned()).collect(),
                tools: req.tools as i32,
            })),
        };
        let _ = tx.send(Ok(started)).await;
        record.runs_as = Some(spawned.runs_as.to_string());
        record.namespaces = spawned.entered.iter().map(|k| k.proc_name().to_owned()).collect();
        self.audit.emit(&record);
        let audit_log = self.audit.clone();
        let shutdown = self.shutdown.clone();
        // The shorter of the agent's and the policy's.
        let max_age = match (self.limits.max_age, admitted.as_ref().and_then(|a| a.max_age)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The session's slot and the caller's count: held until the session
        // has ended and its processes are gone, and until its replies have
        // been taken or dropped.
        let held: Arc<dyn Send + Sync> = Arc::new((permit, admitted));
        let replies = Replies::new(rx, held.clone());
        tokio::spawn(async move {
            let _held = held;
            let tool_pid = spawned.tool.pid;
            let runs_as = spawned.runs_as.to_string();
            let entered = spawned.entered;
            let s = session::run(spawned, inbound, tx, shutdown, max_age).await;
            let (exit_code, signal) = match s.end {
                End::Exited(ExitStatus::Code(c)) => (Some(c), None),
                End::Exited(ExitStatus::Signal(n)) => (None, Some(n)),
                _ => (None, None),
            };
            tracing::info!(
                session = session_id,
                %target,
                container_id = resolved.container_id.as_deref().unwrap_or(""),
                target_pid = resolved.pid,
                tool_pid,
                namespaces = %entered,
                argv = ?req.argv,
                tools = req.tool_source(),
                tty = req.tty,
                runs_as,
                end = ?s.end,
                exit_code,
                signal,
                duration_ms = s.duration.as_millis() as u64,
                bytes_in = s.bytes_in,
                bytes_out = s.bytes_out,
                bytes_err = s.bytes_err,
                "session"
            );
            record.event = Event::End;
            record.time = audit::now();
            record.end_time = Some(record.time.clone());
            record.exit_code = exit_code;
            record.signal = signal;
            record.end = (!matches!(s.end, End::Exited(_))).then(|| format!("{:?}", s.end));
            record.bytes_in = Some(s.bytes_in);
            record.bytes_out = Some(s.bytes_out + s.bytes_err);
            audit_log.emit(&record);
        });
        Ok(versioned(replies))
    }

    async fn inspect(&self, request: Request<InspectRequest>) -> Result<Response<InspectResponse>, Status> {
        let caller = Caller::of(&request);
        let target = target_of(request.into_inner().target)?;
        let resolved = self
            .admit(&caller, Action::Inspect, &target, None)
            .await?
            .resolved;
        let pid = resolved.pid;
        let read = |f: fn(i32) -> Result<String, ProcError>| f(pid).map_err(AgentError::from);
        Ok(versioned(InspectResponse {
            target: Some(procfs::process_info(pid).map_err(AgentError::from)?),
            node: Some(procfs::process_info(self.node.pid).map_err(AgentError::from)?),
            uid_map: read(procfs::uid_map)?,
            gid_map: read(procfs::gid_map)?,
            cgroup: read(procfs::cgroup)?,
            timens_offsets: read(procfs::timens_offsets)?,
            container_id: resolved.container_id.unwrap_or_default(),
        }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let caller = Caller::of(&request);
        self.admit(&caller, Action::List, &Target::Node, None).await?;
        let namespaces = request.into_inner().namespaces;
        Ok(versioned(
            crate::rpc::inventory::list(&self.resolver, self.node.pid, namespaces).await?,
        ))
    }

    async fn version(&self, _: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        let runtime = self.resolver.cri().await.map(|c| c.runtime).unwrap_or_default();
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime,
            node_pid: self.resolver.node_pid(),
            insecure_skip_authz: self.access.skips_authz(),
            node_name: self.access.node_name().unwrap_or_default().to_owned(),
            policy_error: self.policy.error().unwrap_or_default(),
            sessions_contained: self.containment.sessions.is_some(),
            containment_error: self.containment.error.clone().unwrap_or_default(),
            cgroup_layout: self.containment.layout.map(|l| l.to_string()).unwrap_or_default(),
            sessions_memory: self.containment.memory.clone().ok().flatten().unwrap_or(0),
            sessions_memory_error: self.containment.memory.clone().err().unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kns_proto::agent::Namespace as Pb;

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
            tools: nsenter::ToolSource::Agent as i32,
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
                        req.tools != nsenter::ToolSource::Agent
                            || !(req.namespaces.contains(NsKind::Mnt) || req.namespaces.contains(NsKind::User))
                    );
                    proptest::prop_assert!(!req.argv[0].is_empty());
                    proptest::prop_assert!(req.argv.iter().all(|a| !a.contains('\0')));
                    if let Target::Container(id) = target {
                        proptest::prop_assert!(crate::target::cri::check_id(&id).is_ok());
                    }
                }
                Err(e) => {
                    proptest::prop_assert_eq!(Status::from(e).code(), tonic::Code::InvalidArgument);
                }
            }
        }
    }
}
