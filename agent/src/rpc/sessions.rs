//! The Sessions service: who is inside right now (ListSessions), and
//! ending a session (KillSession). Callers are identified as Exec's are;
//! their own sessions need no right, anyone's need `list` or `delete` on
//! `nodes/sessions` (`access::authz`), asked of the API server.

use kns_proto::agent::sessions_server::Sessions;
use kns_proto::agent::{
    KillSessionRequest, KillSessionResponse, ListSessionsRequest, ListSessionsResponse, SessionInfo,
    SessionTarget,
};
use tonic::{Request, Response, Status};

use crate::access::audit::{Event, Record};
use crate::access::authz::{Action, AuthzError, Subject};
use crate::access::identity::{Caller, Identity, Method};
use crate::rpc::service::{AgentService, versioned};
use crate::session::registry::{About, Entry, Listed};
use crate::status::{AgentError, denied_rule};
use crate::target::resolve::Target;

/// Whether `who` started the session: the same verified user.
fn owns(who: &Identity, about: &About) -> bool {
    about.who.username == who.username && about.who.uid == who.uid
}

fn info(l: Listed) -> SessionInfo {
    let a = l.about;
    let t = a.target;
    SessionInfo {
        id: a.id,
        user: a.who.username,
        auth: a.method.as_str().to_owned(),
        target: Some(SessionTarget {
            requested: t.requested,
            namespace: t.namespace.unwrap_or_default(),
            pod: t.pod.unwrap_or_default(),
            container_id: t.container.unwrap_or_default(),
            pid: t.pid.unwrap_or_default(),
        }),
        argv: a.argv,
        namespaces: a.namespaces,
        tools: a.tools.to_owned(),
        tty: a.tty,
        start_time: a.start_time,
        duration_ms: u64::try_from(l.duration.as_millis()).unwrap_or(u64::MAX),
        bytes_in: l.bytes_in,
        bytes_out: l.bytes_out,
        recording: a.recording.unwrap_or_default(),
    }
}

impl AgentService {
    /// The caller's verified identity, as Exec establishes it; a failure is
    /// a denial in the audit trail.
    async fn identify(&self, caller: &Caller, action: Action) -> Result<(Identity, Method), AgentError> {
        self.access.identify(caller).await.map_err(|e| {
            let e = AgentError::from(e);
            self.record_denial(action, &Target::Node, None, None, None, &e);
            e
        })
    }

    /// The `kill` line of a session, or of a refused attempt to end it
    /// (`reason`): who, which session and what it was in.
    fn kill_record(
        &self,
        who: &Identity,
        method: Method,
        id: u64,
        entry: Option<&Entry>,
        reason: Option<String>,
    ) {
        let event = if reason.is_some() {
            Event::Denied
        } else {
            Event::Kill
        };
        let target = match entry {
            Some(e) => e.about.target.clone(),
            None => self.audit_target(&Target::Node, None),
        };
        let mut r = Record::new(event, Action::Kill.as_str(), target);
        r.session = Some(id);
        r.user = Some(who.clone());
        r.auth = Some(method);
        if let Some(e) = entry {
            r.argv = e.about.argv.clone();
            r.namespaces = e.about.namespaces.clone();
            r.tty = e.about.tty;
            r.tools = Some(e.about.tools);
            r.start_time = Some(e.about.start_time.clone());
        }
        r.reason = reason;
        self.audit.emit(&r);
    }
}

#[tonic::async_trait]
impl Sessions for AgentService {
    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let caller = Caller::of(&request);
        let namespace = request.into_inner().namespace;
        let (who, method) = self.identify(&caller, Action::Sessions).await?;
        // Without the right the answer is narrower, not refused: a user
        // always sees their own sessions.
        let (restricted, denied) = match self
            .access
            .authorize(&who, method, Action::Sessions, &Subject::Node)
            .await
        {
            Ok(_) => (false, None),
            Err(e @ AuthzError::Review(_)) => return Err(AgentError::from(e).into()),
            Err(e) => (true, denied_rule(&e)),
        };
        let sessions = self
            .registry
            .list()
            .into_iter()
            .filter(|l| !restricted || owns(&who, &l.about))
            .filter(|l| {
                namespace.is_empty() || l.about.target.namespace.as_deref() == Some(namespace.as_str())
            })
            .map(info)
            .collect();
        Ok(versioned(ListSessionsResponse {
            sessions,
            restricted,
            denied_rule: denied.map(|v| v.to_string()).unwrap_or_default(),
            node_name: self.access.node_name().unwrap_or_default().to_owned(),
            user: who.username,
        }))
    }

    async fn kill_session(
        &self,
        request: Request<KillSessionRequest>,
    ) -> Result<Response<KillSessionResponse>, Status> {
        let caller = Caller::of(&request);
        let id = request.into_inner().id;
        let (who, method) = self.identify(&caller, Action::Kill).await?;
        let entry = self.registry.get(id);
        // Another user's session, or none: the right is asked first either
        // way, so a refusal says nothing of which sessions exist.
        if !entry.as_ref().is_some_and(|e| owns(&who, &e.about)) {
            let allowed = self
                .access
                .authorize(&who, method, Action::Kill, &Subject::Node)
                .await;
            if let Err(e) = allowed {
                let e = AgentError::from(e);
                tracing::warn!(request = "kill", session = id, user = who.username, reason = %e, "denied");
                self.kill_record(&who, method, id, None, Some(e.to_string()));
                return Err(e.into());
            }
        }
        let entry = entry.ok_or(AgentError::NoSession(id))?;
        if entry.live.kill(&who.username) {
            tracing::info!(
                session = id,
                by = who.username,
                owner = entry.about.who.username,
                "session killed"
            );
            self.kill_record(&who, method, id, Some(&entry), None);
        }
        Ok(versioned(KillSessionResponse {
            session: Some(info(Listed::from(&*entry))),
        }))
    }
}
