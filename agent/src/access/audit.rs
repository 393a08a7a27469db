//! The audit trail: one JSON line per session start, session end, session
//! ended by another (`kill`, naming who), replay of a recording and denial,
//! on stdout (human logs go to stderr) and, with `--audit-log`, appended to
//! a file.
//!
//! The API server's own audit log records the port-forward to the agent's
//! pod with the user's name; these lines record what that user then did on
//! the node, under the identity the API server vouched for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::access::identity::{Identity, Method};

#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {path}: {source}")]
pub struct AuditError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Start,
    End,
    /// A session was ended by `kubectl ns sessions kill`: `user` is who
    /// ended it, `session` which one; its own `end` line follows.
    Kill,
    /// A session's recording was read back: who, and which (`recording`).
    Replay,
    Denied,
}

/// What a request was aimed at, as far as the agent established it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The node's name (`--node-name`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The pod, from the runtime's labels (not the client's claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The host PID entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// What the client asked for (`container/ID`, `pid/N`, `node`).
    pub requested: String,
}

/// One line of the trail.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the line was written (RFC 3339, UTC).
    pub time: String,
    pub event: Event,
    /// `exec`, `inspect`, `list`, `sessions`, `kill` or `replay`.
    pub request: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// The verified identity; absent when authentication itself failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Method>,
    pub target: Target,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// The names of the variables the client set (not their values, which
    /// may be secrets).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub tty: bool,
    /// `--privileged`: a `-m` tool ran as node root rather than with the
    /// container's identity.
    pub privileged: bool,
    /// Where the tool's binary came from: `node`, `target` (-m) or `agent`
    /// (the agent's image, --tools agent); exec only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<&'static str>,
    /// Who the tool ran as: node root, root in the target's user
    /// namespace, or the container's own identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// How the session ended when the tool did not simply exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Who ended the session (`kubectl ns sessions kill`), in its `end`
    /// line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Why the request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The session's recording, when the node's policy records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<crate::record::Note>,
}

/// The current time, RFC 3339 in UTC.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Record {
    pub fn new(event: Event, request: &'static str, target: Target) -> Record {
        Record {
            time: now(),
            event,
            request,
            session: None,
            user: None,
            auth: None,
            target,
            namespaces: Vec::new(),
            argv: Vec::new(),
            tty: false,
            privileged: false,
            tools: None,
            runs_as: None,
            env: Vec::new(),
            start_time: None,
            end_time: None,
            exit_code: None,
            signal: None,
            end: None,
            ended_by: None,
            bytes_in: None,
            bytes_out: None,
            reason: None,
            recording: None,
        }
    }
}

/// Where records go.
#[derive(Debug)]
pub struct Audit {
    file: Option<Mutex<std::fs::File>>,
}

impl Audit {
    /// Stdout, and `path` (appended to) if given.
    pub fn open(path: Option<&Path>) -> Result<Audit, AuditError> {
        let file = path
            .map(|p| {
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| AuditError {
                        path: p.to_owned(),
                        source,
                    })
            })
            .transpose()?;
        Ok(Audit {
            file: file.map(Mutex::new),
        })
    }

    /// Writes one line; a failed write is logged, never fatal to the
    /// session (which is already logged on stderr too).
    pub fn emit(&self, record: &Record) {
        let mut line = serde_json::to_vec(record).expect("audit records serialize");
        line.push(b'\n');
        // One write per line so concurrent sessions' lines never interleave.
        let out = std::io::stdout().lock().write_all(&line);
        let file = match &self.file {
            Some(f) => f.lock().unwrap_or_else(|e| e.into_inner()).write_all(&line),
            None => Ok(()),
        };
        if let Err(error) = out.and(file) {
            tracing::error!(%error, "cannot write an audit record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_one_json_line_with_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(Some(&path)).unwrap();
        let mut r = Record::new(
            Event::Denied,
            "exec",
            Target {
                requested: "node".into(),
                node: Some("n1".into()),
                ..Default::default()
            },
        );
        r.user = Some(Identity {
            username: "alice".into(),
            uid: "u1".into(),
            groups: vec!["devs".into()],
            extra: Default::default(),
        });
        r.auth = Some(Method::Token);
        r.reason = Some("no".into());
        audit.emit(&r);
        audit.emit(&r);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "denied");
        assert_eq!(v["user"]["username"], "alice");
        assert_eq!(v["user"]["groups"][0], "devs");
        assert_eq!(v["auth"], "token");
        assert_eq!(v["target"]["node"], "n1");
        assert_eq!(v["reason"], "no");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
