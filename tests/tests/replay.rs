//! Recorded sessions read back, end to end: a real agent records a session
//! as its policy says, then `kubectl-ns replay` has the agent stream the
//! file, written out byte for byte (`-o cast`) or played; through the fake
//! API server, the agent asks for `get nodes/recordings` on its node, and
//! refuses a user without it with the rule and the grant; a name that is
//! not a recording's is refused, whoever asks.

use std::path::PathBuf;
use std::process::Output;

use kns_tests::agent::Agent;
use kns_tests::bins::{exec, kns, stderr, stdout};
use kns_tests::cluster::{NODE, OneNode};
use kns_tests::kubeapi::Grant;
use kns_tests::recordings::{Recordings, end_line};
use kns_tests::require_root;
use serde_json::Value;
use sha2::Digest;

const POLICY: &str = "recording:\n  record: all\n  nodeTargets: all\n";
/// Output of a few hundred KiB, so that its recording comes in many chunks.
const SCRIPT: &str = "echo replayed-$((6*7)); sleep 0.2; seq 40000; echo last-line";

/// The `end` line of the session `agent` recorded, and the recording's path.
fn recorded(agent: &Agent, rec: &Recordings) -> (Value, PathBuf) {
    let end = end_line(agent);
    let name = end["recording"]["name"].as_str().expect("a recording").to_owned();
    (end, rec.dir.join(name))
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn events<'a>(audit: &'a [Value], event: &str) -> Vec<&'a Value> {
    audit.iter().filter(|r| r["event"] == event).collect()
}

fn refused(o: &Output, words: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(255), "{err}");
    assert!(err.contains(words), "{err}");
    assert!(o.stdout.is_empty(), "{}", stdout(o));
    err
}

#[test]
fn a_recording_replays_byte_for_byte_or_played_and_only_recordings_are_read() {
    require_root();
    let rec = Recordings::new(POLICY);
    let agent = Agent::start_with_env(None, &rec.env());
    let o = exec(&agent.addr(), "node", &["-n"], &["sh", "-c", SCRIPT]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (end, file) = recorded(&agent, &rec);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 3 * 64 * 1024, "{} bytes: one chunk", bytes.len());
    let name = file.file_name().unwrap().to_str().unwrap();
    // NODE_SESSION_UNIXTIME.cast: this agent has no node name of its own.
    let node = name.split('_').next().unwrap();
    let id = end["session"].as_u64().unwrap().to_string();
    let addr = agent.addr();
    let replay = |target: &str, flags: &[&str]| {
        let mut args = vec!["replay", "--agent", &addr, target];
        args.extend(flags);
        kns(&args)
    };

    // (a) By the session's id, as the file is, byte for byte.
    let o = replay(&format!("{node}/{id}"), &["-o", "cast"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&o.stdout), sha256(&bytes));
    assert_eq!(end["recording"]["sha256"], sha256(&bytes));

    // (b) Played, fast, by the file's name: the session's output, not the file.
    let o = replay(&format!("{node}/{name}"), &["--speed", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let played = stdout(&o);
    assert!(
        played.contains("replayed-42\n") && played.contains("\n39999\n40000\nlast-line\n"),
        "{played:?}"
    );
    assert!(
        !played.contains("\"version\""),
        "the header is not output: {played:?}"
    );
    assert!(
        stderr(&o).contains(&format!("replaying {name}")),
        "{}",
        stderr(&o)
    );

    // The agent wrote who replayed which recording.
    let audit = agent.audit();
    let replays = events(&audit, "replay");
    assert_eq!(replays.len(), 2, "{audit:#?}");
    for r in &replays {
        assert_eq!(r["request"], "replay");
        assert_eq!(r["recording"]["name"], name);
        assert_eq!(r["recording"]["size"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(r["auth"], "peercred");
    }
    assert_eq!(replays[0]["target"]["requested"], id.as_str());

    // (d) A name that reaches out of the directory is refused, and audited.
    let o = replay(&format!("{node}/../etc/passwd"), &["-o", "cast"]);
    refused(&o, "`../etc/passwd` is not a recording's name");
    let audit = agent.audit();
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert_eq!(denied[0]["request"], "replay");
    assert_eq!(denied[0]["target"]["requested"], "../etc/passwd");
    // A link put in the directory is not followed.
    std::os::unix::fs::symlink("/etc/passwd", rec.dir.join("node_99_1.cast")).unwrap();
    let o = replay(&format!("{node}/node_99_1.cast"), &["-o", "cast"]);
    refused(&o, "is not a regular file");
    // What the node does not have says where names come from.
    let o = replay(&format!("{node}/99"), &[]);
    refused(&o, "recording.name");
    // With --agent, the node asked for must be the agent's: its recordings
    // are named after it.
    let o = replay(&format!("other-node/{id}"), &["-o", "cast"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not node other-node's") && stdout(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    // Without a recording after the node, or without a node's name before
    // it, a usage error.
    for target in [node, "../etc/passwd", "Node-1/7"] {
        let o = replay(target, &[]);
        assert_eq!(o.status.code(), Some(2), "{target}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("expected NODE/RECORDING"),
            "{target}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn replaying_needs_get_nodes_recordings_on_the_node() {
    require_root();
    let rec = Recordings::new(POLICY);
    let c = OneNode::start_with_env("replay-rbac", 8320, &rec.env());
    c.add_agent_pod("kubectl-ns-agent-r1", c.agent.pid());
    for (token, user) in [("alice-token", "alice"), ("bob-token", "bob")] {
        c.api.add_user(token, user, &["system:authenticated"]);
    }
    // A session on the node, recorded, run by the kubeconfig's own user
    // (who may do anything until grants are set).
    let o = c
        .api
        .kns(&["exec", &format!("node/{NODE}"), "-n", "--", "sh", "-c", SCRIPT]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (end, file) = recorded(&c.agent, &rec);
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(&format!("{NODE}_")), "{name}");
    let id = end["session"].as_u64().unwrap().to_string();

    c.api.set_grants(vec![
        Grant::new("alice", "get", "kubectl-ns.io", "nodes/recordings").named(NODE),
        // The node right is not the recordings'.
        Grant::new("bob", "create", "kubectl-ns.io", "nodes/exec"),
    ]);
    let as_user = |token: &str, target: &str| {
        let kubeconfig = c.api.kubeconfig_for(&format!("token: {token}"));
        c.api
            .kns_command_as(&kubeconfig, &["replay", target, "-o", "cast"])
            .output()
            .expect("run kubectl-ns")
    };
    let o = as_user("alice-token", &format!("{NODE}/{name}"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&o.stdout), sha256(&std::fs::read(&file).unwrap()));
    let o = as_user("alice-token", &format!("{NODE}/{id}"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("replayed-42"), "{}", stdout(&o));
    let reviews = c.api.reviews();
    let asked = reviews
        .iter()
        .map(|r| &r["spec"]["resourceAttributes"])
        .find(|a| a["subresource"] == "recordings")
        .expect("a SubjectAccessReview for the recordings");
    assert_eq!(
        (
            &asked["verb"],
            &asked["group"],
            &asked["resource"],
            &asked["name"]
        ),
        (
            &"get".into(),
            &"kubectl-ns.io".into(),
            &"nodes".into(),
            &NODE.into()
        )
    );

    let o = as_user("bob-token", &format!("{NODE}/{id}"));
    let err = refused(
        &o,
        &format!("bob may not get nodes/recordings (API group kubectl-ns.io) on node {NODE}"),
    );
    assert!(
        err.contains(
            "kubectl create clusterrolebinding kubectl-ns-recording-viewer-bob \
             --clusterrole=kubectl-ns-recording-viewer --user=bob"
        ),
        "{err}"
    );
    let audit = c.agent.audit();
    let denied = events(&audit, "denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert_eq!(denied[0]["request"], "replay");
    assert_eq!(denied[0]["user"]["username"], "bob");
    let replays = events(&audit, "replay");
    assert_eq!(replays.len(), 2, "{audit:#?}");
    assert!(
        replays.iter().all(|r| r["user"]["username"] == "alice"),
        "{audit:#?}"
    );
}
