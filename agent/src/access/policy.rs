//! The node operator's policy: which sessions the agent admits, on top of
//! who may open them (authorization). A YAML file — in a cluster the
//! `kubectl-ns-policy` ConfigMap, mounted into the agent's pod — read again
//! whenever it changes, so a new policy applies without a restart. A policy
//! that does not parse keeps the last good one in force and says why in the
//! log and in `kubectl ns status`; at start, with no good one yet, sessions
//! are refused until it is fixed (closed, not open).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::access::recording::{self, Recording, matches};
use crate::kernel::ns::{NsKind, NsSet};
use crate::metrics::Metrics;

/// What the operator allows. Every field is optional; an empty policy (or
/// no file) allows everything authorization allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// Kubernetes namespaces whose pods may be targeted; a trailing `*`
    /// matches any suffix (`team-*`). Absent: all.
    pub namespaces: Option<Vec<String>>,
    /// Whether `node/NODE` targets (and raw PIDs) are allowed. Default yes.
    pub node_targets: Option<bool>,
    /// Namespace kinds that may not be entered (`user`, `mnt`, ...).
    #[serde(default)]
    pub deny_kinds: Vec<KindName>,
    /// If set, only these tools may run: a bare name matches only a bare
    /// `argv[0]` (found through `PATH`), a path only that exact path.
    pub commands: Option<Vec<String>>,
    /// Sessions are ended after this many seconds.
    pub max_session_seconds: Option<u64>,
    /// At most this many sessions at once for one user.
    pub max_sessions_per_user: Option<u32>,
    /// At most this many sessions at once on this node (below the agent's
    /// --max-sessions, which bounds its resources).
    pub max_sessions: Option<u32>,
    /// No terminal and no stdin: tools can show, not be driven.
    #[serde(default)]
    pub read_only: bool,
    /// Whether `-m --privileged` (the image's binary as node root) is
    /// allowed. Default yes.
    pub allow_privileged: Option<bool>,
    /// Which sessions are recorded ([`crate::access::recording`]).
    #[serde(default)]
    pub recording: Recording,
}

/// Variables that choose what runs (a search path, a preloaded library):
/// with a command allow-list, the client may not set them, or the name it
/// allowed would run something else.
const STEERING: &[&str] = &[
    "PATH",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "BASH_ENV",
    "ENV",
    "IFS",
];

fn steers(key: &str) -> bool {
    key.starts_with("LD_") || STEERING.contains(&key)
}

/// A namespace kind as /proc names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KindName(pub NsKind);

impl TryFrom<String> for KindName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        NsKind::ALL
            .into_iter()
            .find(|k| k.proc_name() == s)
            .map(KindName)
            .ok_or_else(|| {
                let names: Vec<_> = NsKind::ALL.iter().map(|k| k.proc_name()).collect();
                format!("unknown namespace kind {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// A session asking to start, as the policy sees it.
#[derive(Debug)]
pub struct Ask<'a> {
    /// The verified user.
    pub user: &'a str,
    /// The target pod's Kubernetes namespace; `None` for node and PID
    /// targets.
    pub namespace: Option<&'a str>,
    pub kinds: NsSet,
    pub argv0: &'a str,
    pub tty: bool,
    pub stdin: bool,
    pub privileged: bool,
    /// The names of the variables the client sets.
    pub env: Vec<&'a str>,
}

/// Why the policy refuses a session, worded for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the node's kubectl-ns policy is invalid, so no session is allowed until it is fixed: {0}")]
    Invalid(String),
    #[error("the node's kubectl-ns policy does not allow targets in namespace {0:?} (namespaces)")]
    Namespace(String),
    #[error("the node's kubectl-ns policy does not allow node targets (nodeTargets)")]
    NodeTarget,
    #[error("the node's kubectl-ns policy does not allow entering the {0} namespace (denyKinds)")]
    Kind(&'static str),
    #[error("the node's kubectl-ns policy does not allow running {0:?} (commands: {1})")]
    Command(String, String),
    #[error("the node's kubectl-ns policy is read-only: no terminal and no stdin (readOnly); drop -t and -i")]
    ReadOnly,
    #[error("the node's kubectl-ns policy does not allow --privileged (allowPrivileged)")]
    Privileged,
    #[error("the node's kubectl-ns policy allows only some commands, so -e may not set {0} (commands)")]
    Environment(String),
    #[error(
        "the node's kubectl-ns policy allows {0} sessions at once per user (maxSessionsPerUser); end one first"
    )]
    PerUser(u32),
    #[error(
        "the node's kubectl-ns policy allows {0} sessions at once on this node (maxSessions); retry later"
    )]
    PerNode(u32),
}

impl Denied {
    /// The policy's field that refused, for the client.
    pub fn rule(&self) -> &'static str {
        match self {
            Denied::Invalid(_) => "invalid",
            Denied::Namespace(_) => "namespaces",
            Denied::NodeTarget => "nodeTargets",
            Denied::Kind(_) => "denyKinds",
            Denied::Command(..) => "commands",
            Denied::ReadOnly => "readOnly",
            Denied::Privileged => "allowPrivileged",
            Denied::Environment(_) => "commands",
            Denied::PerUser(_) => "maxSessionsPerUser",
            Denied::PerNode(_) => "maxSessions",
        }
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        // An empty file (an empty ConfigMap key) is the empty policy.
        if text.trim().is_empty() {
            return Ok(Policy::default());
        }
        yaml_serde::from_str(text).map_err(|e| e.to_string())
    }

    /// The checks that need no count of running sessions.
    fn check(&self, ask: &Ask) -> Result<(), Denied> {
        match ask.namespace {
            Some(ns) => {
                if let Some(allowed) = &self.namespaces
                    && !allowed.iter().any(|p| matches(p, ns))
                {
                    return Err(Denied::Namespace(ns.to_owned()));
                }
            }
            None if self.node_targets == Some(false) => return Err(Denied::NodeTarget),
            None => {}
        }
        if let Some(k) = self.deny_kinds.iter().find(|k| ask.kinds.contains(k.0)) {
            return Err(Denied::Kind(k.0.proc_name()));
        }
        if let Some(cmds) = &self.commands {
            if !cmds.iter().any(|c| c == ask.argv0) {
                return Err(Denied::Command(ask.argv0.to_owned(), cmds.join(", ")));
            }
            if let Some(k) = ask.env.iter().find(|k| steers(k)) {
                return Err(Denied::Environment((*k).to_owned()));
            }
        }
        if self.allow_privileged == Some(false) && ask.privileged {
            return Err(Denied::Privileged);
        }
        if self.read_only && (ask.tty || ask.stdin) {
            return Err(Denied::ReadOnly);
        }
        Ok(())
    }
}

/// The policy in force, what is wrong with the file if anything, and the
/// sessions running under it.
#[derive(Debug)]
pub struct Policies {
    path: Option<PathBuf>,
    state: RwLock<State>,
    running: Arc<Mutex<Running>>,
    /// Counts the files taken into force and refused.
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until a good policy was read (then every session is refused).
    good: Option<Arc<Policy>>,
    /// The file as last read, to notice changes.
    text: Option<String>,
    /// Why the file as it is now is not in force.
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Running {
    total: u32,
    per_user: HashMap<String, u32>,
}

/// A session admitted by the policy; counted until dropped.
#[derive(Debug)]
pub struct Admitted {
    user: String,
    running: Arc<Mutex<Running>>,
    /// Sessions end after this long, if the policy says so.
    pub max_age: Option<Duration>,
    /// Whether, and how, the session is recorded.
    pub recording: Option<recording::Settings>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        r.total = r.total.saturating_sub(1);
        if let Some(n) = r.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                r.per_user.remove(&self.user);
            }
        }
    }
}

impl Policies {
    /// Reads `path` (no path: the empty policy, always).
    pub fn load(path: Option<PathBuf>, metrics: Metrics) -> Policies {
        let p = Policies {
            state: RwLock::new(State {
                good: path.is_none().then(Default::default),
                ..State::default()
            }),
            path,
            running: Arc::default(),
            metrics,
        };
        p.reload();
        p
    }

    /// Reads the file again; a change that parses takes effect, one that
    /// does not is reported and leaves the last good policy in force. A
    /// missing file is the empty policy (an optional ConfigMap not made).
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                self.set_error(path, format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.text.as_ref() == Some(&text) {
            return;
        }
        st.text = Some(text.clone());
        match Policy::parse(&text) {
            Ok(p) => {
                tracing::info!(file = %path.display(), policy = ?p, "policy in force");
                st.good = Some(Arc::new(p));
                st.error = None;
                self.metrics.policy_reloaded();
            }
            Err(e) => {
                let kept = if st.good.is_some() {
                    "the previous one stays in force"
                } else {
                    "no session is allowed"
                };
                tracing::error!(file = %path.display(), error = %e, "invalid policy: {kept}");
                self.metrics.policy_reload_failed();
                st.error = Some(format!("{}: {e} ({kept})", path.display()));
            }
        }
    }

    fn set_error(&self, path: &Path, e: String) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.error.as_ref() != Some(&e) {
            tracing::error!(file = %path.display(), error = %e, "cannot read the policy");
            self.metrics.policy_reload_failed();
        }
        st.error = Some(e);
    }

    /// Why the policy file is not in force, if it is not.
    pub fn error(&self) -> Option<String> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).error.clone()
    }

    /// Admits a session or says which rule refuses it.
    pub fn admit(&self, ask: &Ask) -> Result<Admitted, Denied> {
        let policy = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            st.good
                .clone()
                .ok_or_else(|| Denied::Invalid(st.error.clone().unwrap_or_default()))?
        };
        policy.check(ask)?;
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(max) = policy.max_sessions
            && r.total >= max
        {
            return Err(Denied::PerNode(max));
        }
        let mine = r.per_user.get(ask.user).copied().unwrap_or(0);
        if let Some(max) = policy.max_sessions_per_user
            && mine >= max
        {
            return Err(Denied::PerUser(max));
        }
        r.total += 1;
        r.per_user.insert(ask.user.to_owned(), mine + 1);
        Ok(Admitted {
            user: ask.user.to_owned(),
            running: self.running.clone(),
            max_age: policy.max_session_seconds.map(Duration::from_secs),
            recording: policy.recording.settings(ask.namespace, ask.tty || ask.stdin),
        })
    }

    /// Re-reads the file every `every` for the agent's life: the kubelet
    /// updates a mounted ConfigMap in place, within about a minute.
    pub fn watch(self: Arc<Self>, every: Duration) {
        if self.path.is_none() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(ns: Option<&'a str>, kinds: &[NsKind], argv0: &'a str) -> Ask<'a> {
        Ask {
            user: "alice",
            namespace: ns,
            kinds: kinds.iter().copied().collect(),
            argv0,
            tty: false,
            stdin: false,
            privileged: false,
            env: Vec::new(),
        }
    }

    /// An operator fixes a policy by these words: they name the field and
    /// the place, whichever YAML crate reads the file.
    #[test]
    fn a_bad_policy_is_worded_with_its_field_and_place() {
        let cases = [
            (
                "namespace: [a]\n",
                "unknown field `namespace`, expected one of `namespaces`, `nodeTargets`, `denyKinds`, `commands`, \
                 `maxSessionSeconds`, `maxSessionsPerUser`, `maxSessions`, `readOnly`, `allowPrivileged`, `recording`",
            ),
            (
                "maxSessions: many\n",
                "maxSessions: invalid type: string \"many\", expected u32 at line 1 column 14",
            ),
            (
                "readOnly: true\n  commands: [ss]\n",
                "readOnly: invalid type: string \"true commands\", expected a boolean at line 1 column 11",
            ),
            ("- a\n", "invalid type: sequence, expected struct Policy"),
        ];
        let got: Vec<_> = cases
            .iter()
            .map(|(text, _)| Policy::parse(text).unwrap_err())
            .collect();
        let want: Vec<_> = cases.iter().map(|(_, words)| *words).collect();
        assert_eq!(got, want);
    }

    fn policies(text: &str) -> (tempfile::TempDir, Policies) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        let p = Policies::load(Some(path), Metrics::default());
        (dir, p)
    }

    #[test]
    fn each_rule_refuses_by_name() {
        let text = "namespaces: [web, team-*]\nnodeTargets: false\ndenyKinds: [user, mnt]\n\
                    commands: [ss, /usr/bin/ip]\nreadOnly: true\n";
        let (_d, p) = policies(text);
        assert!(p.admit(&ask(Some("team-a"), &[NsKind::Net], "ss")).is_ok());
        assert_eq!(
            p.admit(&ask(Some("kube-system"), &[NsKind::Net], "ss"))
                .unwrap_err(),
            Denied::Namespace("kube-system".into())
        );
        assert_eq!(
            p.admit(&ask(None, &[NsKind::Net], "ss")).unwrap_err(),
            Denied::NodeTarget
        );
        assert_eq!(
            p.admit(&ask(Some("web"), &[NsKind::Net, NsKind::Mnt], "ss"))
                .unwrap_err(),
            Denied::Kind("mnt")
        );
        // A bare name is not any binary of that name.
        assert!(matches!(
            p.admit(&ask(Some("web"), &[NsKind::Net], "/tmp/ss")).unwrap_err(),
            Denied::Command(..)
        ));
        assert!(p.admit(&ask(Some("web"), &[NsKind::Net], "/usr/bin/ip")).is_ok());
        let mut tty = ask(Some("web"), &[NsKind::Net], "ss");
        tty.tty = true;
        assert_eq!(p.admit(&tty).unwrap_err(), Denied::ReadOnly);
        // The allowed name, steered to another binary or library.
        for key in ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH"] {
            let mut steered = ask(Some("web"), &[NsKind::Net], "ss");
            steered.env = vec![key];
            assert_eq!(p.admit(&steered).unwrap_err(), Denied::Environment(key.into()));
        }
        let mut lang = ask(Some("web"), &[NsKind::Net], "ss");
        lang.env = vec!["LANG"];
        assert!(p.admit(&lang).is_ok());
        let (_d, p) = policies("allowPrivileged: false\n");
        let mut privileged = ask(Some("web"), &[NsKind::Mnt], "ls");
        privileged.privileged = true;
        assert_eq!(p.admit(&privileged).unwrap_err(), Denied::Privileged);
    }

    #[test]
    fn sessions_are_counted_per_user_and_per_node_until_they_end() {
        let (_d, p) = policies("maxSessionsPerUser: 1\nmaxSessions: 2\n");
        let a = p.admit(&ask(None, &[NsKind::Net], "ss")).unwrap();
        assert_eq!(
            p.admit(&ask(None, &[NsKind::Net], "ss")).unwrap_err(),
            Denied::PerUser(1)
        );
        let mut bob = ask(None, &[NsKind::Net], "ss");
        bob.user = "bob";
        let _b = p.admit(&bob).unwrap();
        let mut carol = ask(None, &[NsKind::Net], "ss");
        carol.user = "carol";
        assert_eq!(p.admit(&carol).unwrap_err(), Denied::PerNode(2));
        drop(a);
        assert!(p.admit(&ask(None, &[NsKind::Net], "ss")).is_ok());
    }

    #[test]
    fn an_invalid_file_keeps_the_last_good_policy_and_says_why() {
        let (d, p) = policies("denyKinds: [user]\n");
        assert!(p.error().is_none());
        std::fs::write(d.path().join("policy.yaml"), "denyKinds: [usr]\n").unwrap();
        p.reload();
        let e = p.error().expect("an error");
        assert!(e.contains("usr") && e.contains("previous one stays"), "{e}");
        assert_eq!(
            p.admit(&ask(None, &[NsKind::User], "ss")).unwrap_err(),
            Denied::Kind("user")
        );
        std::fs::write(d.path().join("policy.yaml"), "maxSessionSeconds: 60\n").unwrap();
        p.reload();
        assert!(p.error().is_none());
        let a = p.admit(&ask(None, &[NsKind::User], "ss")).unwrap();
        assert_eq!(a.max_age, Some(Duration::from_secs(60)));
        // Two files in force and one refused; reading an unchanged file
        // again is no reload.
        p.reload();
        let text = p.metrics.encode().unwrap();
        for line in [
            "kubectl_ns_policy_reloads_total 2\n",
            "kubectl_ns_policy_reload_errors_total 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn an_invalid_file_at_start_refuses_every_session() {
        let (_d, p) = policies("readOnly: maybe\n");
        assert!(matches!(
            p.admit(&ask(None, &[NsKind::Net], "ss")).unwrap_err(),
            Denied::Invalid(_)
        ));
    }

    #[test]
    fn no_file_or_an_empty_one_allows_everything() {
        let p = Policies::load(
            Some(PathBuf::from("/nonexistent/policy.yaml")),
            Metrics::default(),
        );
        assert!(p.admit(&ask(None, &[NsKind::User], "anything")).is_ok());
        let (_d, p) = policies("");
        assert!(p.admit(&ask(None, &[NsKind::User], "anything")).is_ok());
    }
}
