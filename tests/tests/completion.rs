//! Shell completion the kubectl way: `kubectl ns <TAB>` runs the
//! `kubectl_complete-ns` executable with the words so far and reads cobra's
//! `__complete` answer (candidates, then `:DIRECTIVE`); pods, nodes and
//! containers come from the API server.

use std::process::Command;

use kns_tests::bins;
use kns_tests::kubeapi::{FakeApi, running_pod};

fn cluster() -> FakeApi {
    let api = FakeApi::start();
    api.add_node("worker-1");
    api.add_node("worker-2");
    api.add_namespace("default", &[]);
    api.add_namespace("prod", &[]);
    api.add_pod(running_pod(
        "default",
        "web-1",
        "worker-1",
        &[("app", "ctr-a"), ("sidecar", "ctr-b")],
    ));
    api.add_pod(running_pod("default", "web-2", "worker-2", &[("app", "ctr-c")]));
    api.add_pod(running_pod("default", "db-0", "worker-1", &[("db", "ctr-d")]));
    api.add_pod(running_pod("prod", "web-9", "worker-2", &[("app", "ctr-e")]));
    api
}

/// The fake API's kubeconfig, and a completion timeout that a loaded
/// machine stays within: the default 2 s is for people at a shell.
fn env(api: &FakeApi) -> [(&'static str, String); 2] {
    [
        ("KUBECONFIG", api.kubeconfig_arg()),
        ("KNS_COMPLETION_TIMEOUT", "30s".into()),
    ]
}

/// The candidates (values only) and the directive for `words`, the last
/// one being completed.
fn complete(api: &FakeApi, words: &[&str]) -> (Vec<String>, String) {
    let o = Command::new(bins::plugin())
        .arg("__complete")
        .args(words)
        .envs(env(api))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", bins::stderr(&o));
    parse(&String::from_utf8_lossy(&o.stdout))
}

fn parse(out: &str) -> (Vec<String>, String) {
    let mut lines: Vec<&str> = out.lines().collect();
    let directive = lines.pop().unwrap_or_default().to_owned();
    assert!(directive.starts_with(':'), "no directive line in {out:?}");
    let values = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect();
    (values, directive)
}

#[test]
fn pods_nodes_containers_and_namespaces_come_from_the_api() {
    let api = cluster();
    let (v, d) = complete(&api, &["exec", "we"]);
    assert_eq!(v, ["web-1", "web-2"]);
    assert_eq!(d, ":4");
    // --namespace and the NS/ form both choose where pods are listed.
    assert_eq!(
        complete(&api, &["exec", "--namespace", "prod", ""]).0,
        ["web-9", "node/"]
    );
    assert_eq!(complete(&api, &["ls", "prod/"]).0, ["prod/web-9"]);
    assert_eq!(
        complete(&api, &["exec", "node/"]).0,
        ["node/worker-1", "node/worker-2"]
    );
    assert_eq!(complete(&api, &["exec", "web-1", "-c", ""]).0, ["app", "sidecar"]);
    assert_eq!(complete(&api, &["exec", "--namespace", "pr"]).0, ["prod"]);
    // Only the target is completed from the API; after `--` the shell's files.
    assert_eq!(complete(&api, &["exec", "web-1", "x"]).0, Vec::<String>::new());
    assert_eq!(complete(&api, &["exec", "web-1", "-n", "--", "s"]).1, ":0");
}

#[test]
fn subcommands_flags_and_values_come_from_the_definitions() {
    let api = cluster();
    assert_eq!(complete(&api, &["st"]).0, ["status"]);
    let (flags, _) = complete(&api, &["exec", "web-1", "--n"]);
    assert!(
        flags.contains(&"--net".to_owned()) && flags.contains(&"--namespace".to_owned()),
        "{flags:?}"
    );
    assert_eq!(complete(&api, &["ls", "web-1", "-o", "w"]).0, ["wide"]);
    assert_eq!(complete(&api, &["completion", ""]).0, ["bash", "zsh", "fish"]);
    // Directly on a node, the agent's own target forms.
    assert_eq!(
        complete(&api, &["exec", "--agent", "unix:///x.sock", ""]).0,
        ["container/", "pid/", "node"]
    );
}

#[test]
fn a_slow_api_server_never_hangs_the_shell() {
    let api = cluster();
    api.set_latency(std::time::Duration::from_secs(30));
    let start = std::time::Instant::now();
    let o = Command::new(bins::plugin())
        .args(["__complete", "exec", "we"])
        .env("KUBECONFIG", api.kubeconfig_arg())
        .env_remove("KNS_COMPLETION_TIMEOUT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", bins::stderr(&o));
    let (v, _) = parse(&String::from_utf8_lossy(&o.stdout));
    assert!(v.is_empty(), "{v:?}");
    // Bounded by the completion's own timeout, far below the API's 30 s.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

/// KNS_COMPLETION_TIMEOUT waits longer than the default 2 s for a slow
/// API server (3 s on each request here), and completion then answers.
#[test]
fn completion_timeout_waits_for_a_slow_api_server() {
    let api = cluster();
    api.set_latency(std::time::Duration::from_secs(3));
    assert_eq!(complete(&api, &["exec", "we"]).0, ["web-1", "web-2"]);
}

#[test]
fn kubectl_completes_kubectl_ns_through_kubectl_complete_ns() {
    let api = cluster();
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(bins::plugin(), bin.path().join("kubectl-ns")).unwrap();
    std::os::unix::fs::symlink(bins::plugin(), bin.path().join("kubectl_complete-ns")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("kubectl")
        .args(["__complete", "ns", "exec", "we"])
        .env("PATH", path)
        .envs(env(&api))
        .output()
        .expect("kubectl is installed (see shared/ENVIRONMENT.md)");
    let (v, d) = parse(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(v, ["web-1", "web-2"], "{}", bins::stderr(&o));
    assert_eq!(d, ":4");
}

/// Runs `script` in `shell` with only `kubectl-ns` (this build) added to
/// PATH and the fake API's kubeconfig; its stdout.
fn in_shell(api: &FakeApi, shell: &str, script: &str) -> String {
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(bins::plugin(), bin.path().join("kubectl-ns")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(shell)
        .args(["-c", script])
        .env("PATH", path)
        .envs(env(api))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shell} (scripts/deps installs it): {e}"));
    assert!(o.status.success(), "{shell}: {}", bins::stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn each_shells_script_completes_from_the_binary() {
    let api = cluster();
    let bash = r#"source <(kubectl-ns completion bash)
COMP_WORDS=(kubectl-ns exec we); COMP_CWORD=2
_kubectl_ns
printf '%s\n' "${COMPREPLY[@]}""#;
    assert_eq!(in_shell(&api, "bash", bash), "web-1\nweb-2\n");
    // zsh's completion system is stubbed: compdef registers, compadd shows.
    let zsh = r#"compdef() { :; }
compadd() { while [[ $1 != -- ]]; do shift; done; shift; print -l -- "$@"; }
source <(kubectl-ns completion zsh)
words=(kubectl-ns exec we); CURRENT=3
_kubectl_ns"#;
    assert_eq!(in_shell(&api, "zsh", zsh), "web-1\nweb-2\n");
    let fish = "kubectl-ns completion fish | source; complete -C 'kubectl-ns exec we'";
    let out = in_shell(&api, "fish", fish);
    let values: Vec<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default())
        .collect();
    assert_eq!(values, ["web-1", "web-2"], "{out}");
}
