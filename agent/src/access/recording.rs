//! Which sessions the operator's policy records: the `recording:` section.
//!
//! ```yaml
//! recording:
//!   record: tty              # none | tty | all, where no rule below names the target
//!   namespaces:              # pod targets, by Kubernetes namespace; the first match wins
//!     - match: "prod-*"
//!       record: all
//!   nodeTargets: all         # node/NODE and pid/N targets
//!   input: true              # also what the user typed (passwords typed at a prompt, too)
//!   maxSessionBytes: 67108864
//!   maxTotalBytes: 1073741824
//! ```
//!
//! Off unless the policy says so: a recording holds everything a session
//! showed, which the operator must choose to keep.

use serde::Deserialize;

/// Which sessions are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    #[default]
    None,
    /// The sessions a person drives: with a terminal (`-t`), or with
    /// stdin (`--stdin`), which a shell reads as well (and a tool can make
    /// a terminal of on the node).
    Tty,
    /// Every session, with a terminal or not.
    All,
}

/// One namespace rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceRule {
    /// A namespace name; a trailing `*` matches any suffix, as in the
    /// policy's `namespaces`.
    #[serde(rename = "match")]
    pub pattern: String,
    pub record: Record,
}

/// A session's recording at most this big: 64 MiB.
const MAX_SESSION_BYTES: u64 = 64 << 20;
/// All recordings on the node at most this big: 1 GiB; the oldest go first.
const MAX_TOTAL_BYTES: u64 = 1 << 30;

/// The policy's `recording:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Recording {
    #[serde(default)]
    pub record: Record,
    #[serde(default)]
    pub namespaces: Vec<NamespaceRule>,
    pub node_targets: Option<Record>,
    #[serde(default)]
    pub input: bool,
    pub max_session_bytes: Option<u64>,
    pub max_total_bytes: Option<u64>,
}

/// Whether `name` is `pattern`, or starts with what comes before its
/// trailing `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// How one admitted session is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Also what the user typed.
    pub input: bool,
    pub max_session_bytes: u64,
    pub max_total_bytes: u64,
}

impl Recording {
    /// Whether a session on `namespace`'s pod (`None`: a node or PID
    /// target), driven by a person (`interactive`: a terminal or stdin) or
    /// not, is recorded, and how.
    pub fn settings(&self, namespace: Option<&str>, interactive: bool) -> Option<Settings> {
        let record = match namespace {
            None => self.node_targets.unwrap_or(self.record),
            Some(ns) => self
                .namespaces
                .iter()
                .find(|r| matches(&r.pattern, ns))
                .map_or(self.record, |r| r.record),
        };
        let on = match record {
            Record::None => false,
            Record::Tty => interactive,
            Record::All => true,
        };
        on.then(|| Settings {
            input: self.input,
            max_session_bytes: self.max_session_bytes.unwrap_or(MAX_SESSION_BYTES),
            max_total_bytes: self.max_total_bytes.unwrap_or(MAX_TOTAL_BYTES),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Recording {
        yaml_serde::from_str(text).expect("a recording section")
    }

    #[test]
    fn nothing_is_recorded_unless_the_policy_says_so() {
        let r = Recording::default();
        assert_eq!(r.settings(Some("default"), true), None);
        assert_eq!(r.settings(None, true), None);
    }

    #[test]
    fn the_first_matching_namespace_rule_decides_and_node_targets_have_their_own() {
        let r = parse(
            "record: tty\nnamespaces:\n- match: prod-*\n  record: all\n- match: prod-quiet\n  record: none\n\
             nodeTargets: all\ninput: true\nmaxSessionBytes: 1024\n",
        );
        let on = Some(Settings {
            input: true,
            max_session_bytes: 1024,
            max_total_bytes: MAX_TOTAL_BYTES,
        });
        assert_eq!(r.settings(Some("prod-quiet"), false), on, "prod-* came first");
        assert_eq!(r.settings(Some("dev"), false), None, "driven by a person only");
        assert_eq!(r.settings(Some("dev"), true), on);
        assert_eq!(r.settings(None, false), on);
    }

    #[test]
    fn a_misspelt_mode_is_refused_with_its_choices() {
        let e = yaml_serde::from_str::<Recording>("record: always\n").unwrap_err();
        assert!(
            e.to_string().contains("expected one of `none`, `tty`, `all`"),
            "{e}"
        );
    }
}
