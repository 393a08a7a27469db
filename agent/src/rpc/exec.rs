//! The Exec RPC, as a list of steps: read and check the start message,
//! admit it, take a session slot, start the tool, tell the client, and hand
//! the tool's I/O to a session task that writes the `end` line when done.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecResponse, ExecStart, Exited, Started, exited};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::access::audit::{self, Audit, Event, Record};
use crate::access::authz::Action;
use crate::access::identity::{Caller, Identity, Method};
use crate::access::policy::Admitted;
use crate::enter::error::NsenterError;
use crate::enter::nsenter::{self, Spawned};
use crate::enter::request;
use crate::kernel::ns::NsKind;
use crate::metrics::Metrics;
use crate::record::{self, Recording};
use crate::rpc::admit::{Admission, describe_request};
use crate::rpc::service::{AgentService, versioned};
use crate::rpc::validate;
use crate::session::registry::{About, Registered};
use crate::session::replies::{Replies, Reply};
use crate::session::{self, End};
use crate::status::AgentError;
use crate::sys::ExitStatus;
use crate::target::resolve::{self, Target};

/// Few messages in flight per session: with chunks of up to 1 MiB this
/// bounds a session's buffered output to a few MiB. One of them is kept
/// for the session's last message (session::run).
const REPLIES_IN_FLIGHT: usize = 5;

/// A session's request as admitted: what was asked, of what, by whom.
struct Asked {
    target: Target,
    req: request::Request,
    who: Identity,
    method: Method,
    resolved: resolve::Resolved,
}

impl AgentService {
    /// Serves one Exec stream.
    pub(super) async fn exec_session(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let caller = Caller::of(&request);
        let mut inbound = request.into_inner();
        let (target, mut req) = validate::validate(read_start(&mut inbound).await?)?;
        let Admission {
            who,
            method,
            resolved,
            admitted,
            note,
        } = self.admit(&caller, Action::Exec, &target, Some(&mut req)).await?;
        let asked = Asked {
            target,
            req,
            who,
            method,
            resolved,
        };
        if asked.req.privileged && asked.req.namespaces.contains(NsKind::Mnt) {
            tracing::warn!(target = %asked.target, argv = ?asked.req.argv, "--privileged: the target's own binary (-m) runs as root on the node");
        }
        let permit = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.refused(&asked, AgentError::SessionLimit(self.limits.max_sessions)))?;
        if *self.shutdown.borrow() {
            return Err(AgentError::Stopping.into());
        }
        let session_id = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let recording = self
            .start_recording(&asked, admitted.as_ref(), session_id)
            .await?;
        let spawned = self.spawn_tool(&asked, session_id).await?;
        let (tx, rx) = mpsc::channel(REPLIES_IN_FLIGHT);
        let mut record = self.start_record(&asked, session_id);
        record.recording = recording.as_ref().map(Recording::started);
        let spawned = match spawned {
            Ok(s) => s,
            Err(AgentError::Nsenter(NsenterError::Exec { code, message })) => {
                self.not_started(&asked, session_id, record, code, message, &tx)
                    .await;
                return Ok(versioned(Replies::new(rx, Arc::new(permit))));
            }
            Err(AgentError::Nsenter(e)) if e.is_refusal() => {
                return Err(self.refused(&asked, e.into()).into());
            }
            Err(e) => {
                tracing::warn!(session = session_id, target = %asked.target, pid = asked.resolved.pid, error = %e, "session failed to start");
                return Err(e.into());
            }
        };
        record.runs_as = Some(spawned.runs_as.to_string());
        record.namespaces = spawned.entered.iter().map(|k| k.proc_name().to_owned()).collect();
        // Listed from now until the session task ends. The registry holds
        // as many sessions as there are slots, and this one holds a slot:
        // a refusal here is the agent's own bug, not the caller's.
        let registered = match self.registry.insert(about(&asked, &record)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(session = session_id, error = %e, "cannot register the session");
                let _ = tokio::task::spawn_blocking(move || drop(spawned)).await;
                return Err(AgentError::Internal(e.to_string()).into());
            }
        };
        let notices = note.into_iter().chain(recording.as_ref().map(recorded_notice));
        let _ = tx.send(Ok(started_reply(&asked, &spawned, notices))).await;
        self.audit.emit(&record);
        self.metrics.session_started();
        let max_age = self.max_age(admitted.as_ref());
        // The session's slot and the caller's count: held until the session
        // has ended and its processes are gone, and until its replies have
        // been taken or dropped.
        let held: Arc<dyn Send + Sync> = Arc::new((permit, admitted));
        let replies = Replies::new(rx, held.clone());
        let running = Running {
            session_id,
            asked,
            record,
            recording,
            audit: self.audit.clone(),
            metrics: self.metrics.clone(),
            registered,
            _held: held,
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(running.run(spawned, inbound, tx, shutdown, max_age));
        Ok(versioned(replies))
    }

    /// A refusal past the authorizer and the policy, in the audit trail as
    /// theirs are.
    fn refused(&self, asked: &Asked, e: AgentError) -> AgentError {
        self.record_denial(
            Action::Exec,
            &asked.target,
            Some(&asked.resolved),
            Some((&asked.who, asked.method)),
            Some(&asked.req),
            &e,
        );
        e
    }

    /// The session's recording, when the policy records it; the request is
    /// refused (and the refusal audited) when it cannot be made.
    async fn start_recording(
        &self,
        asked: &Asked,
        admitted: Option<&Admitted>,
        session_id: u64,
    ) -> Result<Option<Recording>, AgentError> {
        let Some(settings) = admitted.and_then(|a| a.recording) else {
            return Ok(None);
        };
        // (rows, cols), as the terminal was opened.
        let window = asked.req.window.map_or((80, 24), |(rows, cols)| (cols, rows));
        let node = self.recording_node().to_owned();
        let store = self.recordings.clone();
        // The directory is listed, files removed and made: never on the
        // async thread that serves every session.
        let started = tokio::task::spawn_blocking(move || {
            let session = record::Session {
                node: &node,
                id: session_id,
                window,
                input: settings.input,
                max_session_bytes: settings.max_session_bytes,
                max_total_bytes: settings.max_total_bytes,
            };
            Recording::start(&store, &session)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("recording task failed: {e}")))?;
        let r = started.map_err(|e| self.refused(asked, e.into()))?;
        if !r.removed.is_empty() {
            tracing::info!(removed = ?r.removed, "removed the oldest recordings to keep within the policy's maxTotalBytes");
        }
        Ok(Some(r))
    }

    /// Pins the target again, makes the session's cgroup and starts the
    /// tool, on a blocking thread. The outer error is the blocking task's
    /// own failure; the inner one the tool's start.
    async fn spawn_tool(
        &self,
        asked: &Asked,
        session_id: u64,
    ) -> Result<Result<Spawned, AgentError>, AgentError> {
        let node = self.node.clone();
        let spawn_req = asked.req.clone();
        let r = asked.resolved.clone();
        let spawner = self.spawner.clone();
        let cgroups = self.containment.sessions.clone();
        tokio::task::spawn_blocking(move || -> Result<_, AgentError> {
            let pinned = resolve::pin(&r)?;
            let cgroup = cgroups
                .map(|c| c.create(session_id))
                .transpose()
                .map_err(|e| AgentError::Internal(format!("cannot make the session's cgroup: {e}")))?;
            Ok(nsenter::spawn(&pinned, &spawn_req, &node, &spawner, cgroup)?)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("spawn task failed: {e}")))
    }

    /// The session's `start` line, written once the tool runs (or could not
    /// start).
    fn start_record(&self, asked: &Asked, session_id: u64) -> Record {
        let mut record = Record::new(
            Event::Start,
            "exec",
            self.audit_target(&asked.target, Some(&asked.resolved)),
        );
        record.session = Some(session_id);
        record.user = Some(asked.who.clone());
        record.auth = Some(asked.method);
        describe_request(&mut record, &asked.req);
        record.start_time = Some(record.time.clone());
        record
    }

    /// A tool that could not be executed (not found, not executable): the
    /// session starts and ends at once, with the exit code a shell gives.
    async fn not_started(
        &self,
        asked: &Asked,
        session_id: u64,
        mut record: Record,
        code: i32,
        message: String,
        tx: &mpsc::Sender<Reply>,
    ) {
        let req = &asked.req;
        tracing::info!(session = session_id, target = %asked.target, pid = asked.resolved.pid, namespaces = %req.namespaces,
            argv = ?req.argv, tools = req.tool_source(), exit = code, error = ?message,
            "session could not start the tool");
        self.audit.emit(&record);
        self.metrics.session_not_started(code);
        record.event = Event::End;
        record.end_time = Some(audit::now());
        record.time = audit::now();
        record.exit_code = Some(code);
        record.end = Some(format!("not started: {message}"));
        self.audit.emit(&record);
        let _ = tx.send(Ok(exited_reply(code, message))).await;
    }

    /// The shorter of the agent's and the policy's session age limits.
    fn max_age(&self, admitted: Option<&Admitted>) -> Option<Duration> {
        match (self.limits.max_age, admitted.and_then(|a| a.max_age)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Reads the stream's first message, which must be `start`.
async fn read_start(inbound: &mut Streaming<ExecRequest>) -> Result<ExecStart, AgentError> {
    let first = inbound.message().await.map_err(|s| {
        if s.code() == tonic::Code::OutOfRange {
            AgentError::StartTooLarge
        } else {
            AgentError::Stream(s)
        }
    })?;
    match first {
        Some(ExecRequest {
            msg: Some(In::Start(s)),
        }) => Ok(s),
        _ => Err(AgentError::NotStart),
    }
}

/// Told at the start, never silently: the user may choose not to type a
/// secret into a recorded terminal.
fn recorded_notice(r: &Recording) -> String {
    let what = if r.tap().records_input() {
        "its output and what you type"
    } else {
        "its output"
    };
    format!(
        "this session is recorded by the node's kubectl-ns policy ({what}), as {} in the node's recordings directory",
        r.name
    )
}

/// The session as `kubectl ns sessions` lists it, from its `start` line.
fn about(asked: &Asked, record: &Record) -> About {
    About {
        id: record.session.unwrap_or_default(),
        who: asked.who.clone(),
        method: asked.method,
        target: record.target.clone(),
        argv: asked.req.argv.clone(),
        namespaces: record.namespaces.clone(),
        tools: asked.req.tool_source(),
        tty: asked.req.tty,
        start_time: record.start_time.clone().unwrap_or_default(),
        recording: record.recording.as_ref().map(|r| r.name.clone()),
    }
}

fn started_reply(asked: &Asked, spawned: &Spawned, notices: impl Iterator<Item = String>) -> ExecResponse {
    ExecResponse {
        msg: Some(Out::Started(Started {
            pid: spawned.tool.pid,
            target_pid: asked.resolved.pid,
            notices: notices.chain(spawned.notices.iter().cloned()).collect(),
            tools: asked.req.tools as i32,
        })),
    }
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

/// A started session's task: what it needs to log and record its end.
struct Running {
    session_id: u64,
    asked: Asked,
    record: Record,
    recording: Option<Recording>,
    audit: Arc<Audit>,
    metrics: Metrics,
    /// Its entry in the list of running sessions. Dropped before `_held`
    /// (fields drop in order), so the registry never holds more entries
    /// than there are slots taken.
    registered: Registered,
    /// The session's slot and the caller's count (see `exec_session`).
    _held: Arc<dyn Send + Sync>,
}

impl Running {
    /// Moves the tool's I/O until the session ends, then writes its log
    /// line and its `end` line.
    async fn run(
        mut self,
        spawned: Spawned,
        inbound: Streaming<ExecRequest>,
        tx: mpsc::Sender<Reply>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        max_age: Option<Duration>,
    ) {
        let tool_pid = spawned.tool.pid;
        let runs_as = spawned.runs_as.to_string();
        let entered = spawned.entered;
        let tap = self.recording.as_ref().map(Recording::tap);
        let live = self.registered.live();
        let s = session::run(spawned, inbound, tx, shutdown, max_age, tap, live).await;
        self.metrics.session_ended(&s);
        let (exit_code, signal) = match s.end {
            End::Exited(ExitStatus::Code(c)) => (Some(c), None),
            End::Exited(ExitStatus::Signal(n)) => (None, Some(n)),
            _ => (None, None),
        };
        let (asked, resolved, req) = (&self.asked, &self.asked.resolved, &self.asked.req);
        tracing::info!(
            session = self.session_id,
            target = %asked.target,
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
        let record = &mut self.record;
        record.event = Event::End;
        record.time = audit::now();
        record.end_time = Some(record.time.clone());
        record.exit_code = exit_code;
        record.signal = signal;
        record.end = s.end.audit_word().map(str::to_owned);
        if let End::Killed { by } = &s.end {
            record.ended_by = Some(by.clone());
        }
        record.bytes_in = Some(s.bytes_in);
        record.bytes_out = Some(s.bytes_out + s.bytes_err);
        if let Some(r) = self.recording.take() {
            record.recording = Some(r.finish().await);
        }
        self.audit.emit(record);
    }
}
