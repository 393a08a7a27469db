//! Recorded sessions in tests and benches: an operator's policy that
//! records, the recordings directory its agent writes, and the `end` audit
//! line that says a recording is whole.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::agent::Agent;
use crate::wait_until;

/// A policy file and an (as yet unmade) recordings directory, removed on
/// drop; [`Recordings::env`] points an agent at both.
pub struct Recordings {
    pub policy: PathBuf,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Recordings {
    pub fn new(policy: &str) -> Recordings {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("policy.yaml");
        std::fs::write(&file, policy).expect("policy.yaml");
        Recordings {
            policy: file,
            dir: tmp.path().join("sessions"),
            _tmp: tmp,
        }
    }

    /// `KNS_POLICY` and `KNS_RECORDINGS_DIR` for an agent.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("KNS_POLICY", self.policy.to_str().expect("a UTF-8 path")),
            ("KNS_RECORDINGS_DIR", self.dir.to_str().expect("a UTF-8 path")),
        ]
    }

    /// The files in the directory (none when it was never made).
    pub fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .map(|d| d.map(|e| e.expect("a directory entry").path()).collect())
            .unwrap_or_default()
    }
}

/// The first session `end` line in `agent`'s audit trail, waited for: the
/// agent writes it once the session's recording is whole, after the client
/// has its exit status.
pub fn end_line(agent: &Agent) -> Value {
    let find = || agent.audit().into_iter().find(|l| l["event"] == "end");
    assert!(
        wait_until(Duration::from_secs(10), || find().is_some()),
        "no end line\n{}",
        agent.logs()
    );
    find().expect("found above")
}
