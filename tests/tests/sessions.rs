//! Who is inside right now, end to end: `kubectl ns sessions` through the
//! port-forward, each agent deciding what the caller sees and may end with
//! the (fake) API server's SubjectAccessReview, and `sessions kill` ending
//! another user's session as a client disconnect would, its client told who
//! ended it, nothing left in the target, and the audit trail naming who.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kns_tests::bins::{stderr, stdout};
use kns_tests::cluster::{NODE, OneNode};
use kns_tests::kubeapi::Grant;
use kns_tests::{require_root, running, wait_until};
use serde_json::Value;

fn cluster(pod: &str, port: u16) -> OneNode {
    let c = OneNode::start(pod, port);
    c.add_agent_pod("kubectl-ns-agent-s1", c.agent.pid());
    for (token, user) in [
        ("alice-token", "alice"),
        ("bob-token", "bob"),
        ("carol-token", "carol"),
    ] {
        c.api.add_user(token, user, &["system:authenticated"]);
    }
    // Everyone may exec in the pod as the container (-m); only carol may
    // see and end anyone's sessions, as kubectl-ns-session-admin grants.
    c.api.set_grants(vec![
        Grant::new("group:system:authenticated", "create", "", "pods/exec").in_namespace("default"),
        Grant::new("carol", "list", "kubectl-ns.io", "nodes/sessions"),
        Grant::new("carol", "delete", "kubectl-ns.io", "nodes/sessions"),
    ]);
    c
}

fn kubeconfig(c: &OneNode, user: &str) -> PathBuf {
    c.api.kubeconfig_for(&format!("token: {user}-token"))
}

fn kns(c: &OneNode, kubeconfig: &Path, args: &[&str]) -> Output {
    c.api
        .kns_command_as(kubeconfig, args)
        .output()
        .expect("run kubectl-ns")
}

/// `sessions ARGS… -o json` as the user of `kubeconfig`, parsed.
fn listed(c: &OneNode, kubeconfig: &Path, args: &[&str]) -> Value {
    let args: Vec<&str> = ["sessions"]
        .iter()
        .chain(args)
        .chain(&["-o", "json"])
        .copied()
        .collect();
    let o = kns(c, kubeconfig, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// A long session of `sleep MARK` (twice: the shell's child and the shell
/// itself, exec'd) in the pod, as the container; returns once both run.
fn long_session(c: &OneNode, kubeconfig: &Path, mark: &str) -> Child {
    let script = format!("sleep {mark} & exec sleep {mark}");
    let child = c
        .api
        .kns_command_as(kubeconfig, &["exec", &c.pod, "-m", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl-ns exec");
    assert!(
        wait_until(Duration::from_secs(30), || running(&["sleep", mark])),
        "the session never started:\n{}",
        c.agent.logs()
    );
    child
}

/// Waits for the exec client to end, within `within`.
fn ended(mut child: Child, within: Duration) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < within,
            "the exec client did not end within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    let o = child.wait_with_output().unwrap();
    (o.status.code(), stderr(&o), took)
}

fn assert_none_left(c: &OneNode, mark: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || !running(&["sleep", mark])),
        "the killed session's processes still run:\n{}",
        c.agent.logs()
    );
}

#[test]
fn an_admin_sees_and_ends_another_users_session_and_others_cannot() {
    require_root();
    let c = cluster("sessions-kill", 8391);
    let (alice, bob, carol) = (
        kubeconfig(&c, "alice"),
        kubeconfig(&c, "bob"),
        kubeconfig(&c, "carol"),
    );
    let client = long_session(&c, &alice, "7391");

    // Alice sees her own session, without any session right.
    let mine = listed(&c, &alice, &[]);
    let sessions = mine["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{mine:#}");
    let s = &sessions[0];
    let id = s["id"].as_u64().unwrap();
    assert_eq!(s["node"], NODE);
    assert_eq!(s["user"], "alice");
    assert_eq!(s["auth"], "token");
    assert_eq!(s["target"]["kind"], "pod");
    assert_eq!(s["target"]["namespace"], "default");
    assert_eq!(s["target"]["pod"], c.pod.as_str());
    assert_eq!(s["target"]["container_id"], c.container_id.as_str());
    assert_eq!(s["argv"][0], "sh");
    assert!(s["namespaces"].as_array().unwrap().contains(&"mnt".into()), "{s}");
    assert_eq!(s["tools"], "target");
    assert_eq!(s["tty"], false);
    assert!(s["start_time"].as_str().unwrap().ends_with('Z'), "{s}");
    assert!(s["duration_seconds"].is_u64() && s["bytes_out"].is_u64(), "{s}");
    assert_eq!(mine["nodes"][0]["node"], NODE);
    assert_eq!(mine["nodes"][0]["answered"], true);
    assert_eq!(mine["nodes"][0]["restricted"], true);

    // Bob sees nothing of hers, is told why, and may not end it.
    let o = kns(&c, &bob, &["sessions", "-A"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("alice"), "{}", stdout(&o));
    let grant = "kubectl create clusterrolebinding kubectl-ns-session-admin-bob --clusterrole=kubectl-ns-session-admin --user=bob";
    assert!(
        stderr(&o).contains(&format!("Only your own sessions (bob) are listed on {NODE}"))
            && stderr(&o).contains(grant),
        "{}",
        stderr(&o)
    );
    assert_eq!(listed(&c, &bob, &["-A"])["sessions"], serde_json::json!([]));
    let o = kns(&c, &bob, &["sessions", "kill", &format!("{NODE}/{id}")]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "bob may not delete nodes/sessions (API group kubectl-ns.io) on node {NODE}"
        )) && stderr(&o).contains(grant),
        "{}",
        stderr(&o)
    );
    let o = kns(&c, &bob, &["sessions", "kill", &id.to_string()]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "no session {id} among those you may see on the 1 node asked: only your own are listed on {NODE}"
        )),
        "{}",
        stderr(&o)
    );
    assert!(running(&["sleep", "7391"]), "bob's attempts ended the session");

    // Carol sees it and ends it, by its ID alone.
    let o = kns(&c, &carol, &["sessions", "-A", "-o", "wide"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(
        table.contains("alice") && table.contains(&format!("default/{}/", c.pod)),
        "{table}"
    );
    assert!(!stderr(&o).contains("Only your own"), "{}", stderr(&o));
    let o = kns(&c, &carol, &["sessions", "kill", &id.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("session {NODE}/{id} of alice")),
        "{}",
        stdout(&o)
    );

    // Alice's client is told who ended it, at once, and fails.
    let (code, err, took) = ended(client, Duration::from_secs(10));
    assert_eq!(code, Some(255), "{err}");
    assert!(
        err.contains("session ended by carol (kubectl ns sessions kill)"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_none_left(&c, "7391");
    assert_eq!(listed(&c, &carol, &["-A"])["sessions"], serde_json::json!([]));
    let o = kns(&c, &carol, &["sessions", "kill", &format!("{NODE}/{id}")]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("no session {id} runs on this agent")),
        "{}",
        stderr(&o)
    );

    // The trail: bob's refusal, carol's kill, and the end naming her.
    let audit = c.agent.audit();
    let of = |event: &str| -> Vec<&Value> {
        audit
            .iter()
            .filter(|r| r["event"] == event && r["session"] == id)
            .collect()
    };
    let denied = of("denied");
    assert_eq!(denied.len(), 1, "{audit:#?}");
    assert_eq!(denied[0]["user"]["username"], "bob");
    assert_eq!(denied[0]["request"], "kill");
    let kill = of("kill");
    assert_eq!(kill.len(), 1, "{audit:#?}");
    assert_eq!(kill[0]["user"]["username"], "carol");
    assert_eq!(kill[0]["target"]["pod"], c.pod.as_str());
    let end = of("end");
    assert_eq!(end.len(), 1, "{audit:#?}");
    assert_eq!(end[0]["user"]["username"], "alice");
    assert_eq!(end[0]["ended_by"], "carol");
    assert_eq!(
        end[0]["end"], "Killed",
        "a word, not the debug form of the agent's enum"
    );
}

#[test]
fn a_user_ends_their_own_session_without_any_session_right() {
    require_root();
    let c = cluster("sessions-own", 8392);
    let alice = kubeconfig(&c, "alice");
    let client = long_session(&c, &alice, "7392");
    let mine = listed(&c, &alice, &["--node", NODE]);
    let id = mine["sessions"][0]["id"]
        .as_u64()
        .expect("alice's session listed");
    // Not in another namespace's listing.
    let elsewhere = listed(&c, &alice, &["--namespace", "prod"]);
    assert_eq!(elsewhere["sessions"], serde_json::json!([]), "{elsewhere:#}");
    let o = kns(&c, &alice, &["sessions", "kill", &format!("{NODE}/{id}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, err, _) = ended(client, Duration::from_secs(10));
    assert_eq!(code, Some(255), "{err}");
    assert!(err.contains("session ended by alice"), "{err}");
    assert_none_left(&c, "7392");
    // Gone: a second kill is no longer of her own session, so it needs the
    // right, which says nothing of which sessions exist.
    let o = kns(&c, &alice, &["sessions", "kill", &format!("{NODE}/{id}")]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("alice may not delete nodes/sessions"),
        "{}",
        stderr(&o)
    );
    // A caller the agent cannot identify learns nothing, and the listing
    // fails rather than claim nobody is inside.
    c.api.add_user("dave-token", "dave", &["system:authenticated"]);
    c.api.expire_on_review("dave-token");
    let stranger = kubeconfig(&c, "dave");
    let o = kns(&c, &stranger, &["sessions", "-A"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("node {NODE} did not answer"))
            && stderr(&o).contains("no agent answered (the 1 node above)")
            && !stdout(&o).contains("alice"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // A bad ID is a usage error, said before anything is asked.
    let o = Command::new(kns_tests::bins::plugin())
        .args(["sessions", "kill", "lab-node/x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("expected NODE/ID or ID"), "{}", stderr(&o));
}
