//! The checks every request passes, in order: who is calling, what the
//! target is, whether they may, and whether the node's policy admits the
//! session; a refusal is written to the audit trail.

use crate::access::audit::{self, Event, Record};
use crate::access::authz::{Action, Subject};
use crate::access::identity::{Caller, Identity, Method};
use crate::access::policy::{Admitted, Ask};
use crate::enter::identity::keep_node_filesystem;
use crate::enter::request::Request;
use crate::kernel::ns::NsKind;
use crate::rpc::service::AgentService;
use crate::status::AgentError;
use crate::target::resolve::{self, Target};

impl AgentService {
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

    pub(super) fn audit_target(
        &self,
        target: &Target,
        resolved: Option<&resolve::Resolved>,
    ) -> audit::Target {
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
    pub(super) fn record_denial(
        &self,
        action: Action,
        target: &Target,
        resolved: Option<&resolve::Resolved>,
        who: Option<(&Identity, Method)>,
        req: Option<&Request>,
        e: &AgentError,
    ) {
        let mut r = Record::new(
            Event::Denied,
            action.as_str(),
            self.audit_target(target, resolved),
        );
        r.user = who.map(|(i, _)| i.clone());
        r.auth = who.map(|(_, m)| m);
        if let Some(req) = req {
            describe_request(&mut r, req);
        }
        self.emit_denial(r, e);
    }

    /// Writes `r` as the `denied` line of a request refused for `e`, and
    /// counts the refusal.
    pub(super) fn emit_denial(&self, mut r: Record, e: &AgentError) {
        r.event = Event::Denied;
        r.reason = Some(e.to_string());
        if let Some((kind, rule)) = e.denial() {
            self.metrics.denied(kind, rule);
        }
        tracing::warn!(request = r.request, target = r.target.requested, user = r.user.as_ref().map(|u| u.username.as_str()), reason = ?e.to_string(), "denied");
        self.audit.emit(&r);
    }

    /// Identifies the caller and checks `action` on the resolved target,
    /// recording a denial in the audit trail. A session's request is first
    /// fitted to the target (`-a` without an identity for the image's
    /// binaries), so that the rights checked are those of what will run.
    pub(super) async fn admit(
        &self,
        caller: &Caller,
        action: Action,
        target: &Target,
        mut req: Option<&mut Request>,
    ) -> Result<Admission, AgentError> {
        let deny = |who: Option<(&Identity, Method)>,
                    resolved: Option<&resolve::Resolved>,
                    req: Option<&Request>,
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
            Some(r) => keep_node_filesystem(r, &resolved, &self.node)?,
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
pub(super) struct Admission {
    pub(super) who: Identity,
    pub(super) method: Method,
    pub(super) resolved: resolve::Resolved,
    /// The policy's admission of a session (its count and age limit).
    pub(super) admitted: Option<Admitted>,
    /// What the user is told about how the request was fitted to the
    /// target.
    pub(super) note: Option<String>,
}

/// What a session asked for, in its audit line: the same fields in its
/// `start`, `end` and `denied` lines.
pub(super) fn describe_request(r: &mut Record, req: &Request) {
    r.namespaces = req.namespaces.iter().map(|k| k.proc_name().to_owned()).collect();
    r.argv = req.argv.clone();
    r.env = req.env.keys().cloned().collect();
    r.tty = req.tty;
    r.privileged = req.privileged;
    r.tools = Some(req.tool_source());
}
