//! Usage errors exit 2 with a message that says what to do; kubectl-ns's
//! own failures exit 255 with a hint.

use kns_tests::bins::{kns, stderr};

/// `exec --agent <a socket nobody serves> node ARGS…`: whatever is refused
/// is refused before any agent is asked.
fn exec_on_node<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["exec", "--agent", "unix:///nonexistent.sock", "node"];
    v.extend_from_slice(args);
    v
}

/// Runs `kubectl-ns ARGS`, which must be refused as a usage error (exit
/// 2); returns what it said.
fn usage_error(args: &[&str]) -> String {
    let o = kns(args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    stderr(&o)
}

#[test]
fn no_namespace_is_a_usage_error() {
    let err = usage_error(&exec_on_node(&["--", "true"]));
    assert!(err.contains("no namespace chosen"), "{err}");
}

#[test]
fn namespace_with_a_direct_target_is_a_usage_error() {
    let err = usage_error(&[
        "exec",
        "--agent",
        "unix:///nonexistent.sock",
        "container/abcd",
        "--namespace",
        "prod",
        "-n",
        "--",
        "true",
    ]);
    assert!(
        err.contains("--namespace prod names a pod's namespace, and container/abcd is not a pod"),
        "{err}"
    );
    let err = usage_error(&[
        "ls",
        "--agent",
        "unix:///nonexistent.sock",
        "pid/1",
        "--namespace",
        "prod",
    ]);
    assert!(
        err.contains("--namespace prod names a pod's namespace, and pid/1 is not a pod"),
        "{err}"
    );
}

#[test]
fn privileged_without_the_mount_namespace_is_a_usage_error() {
    let err = usage_error(&exec_on_node(&["-n", "--privileged", "--", "true"]));
    assert!(err.contains("--privileged only changes -m"), "{err}");
}

#[test]
fn no_mount_proc_where_no_proc_is_mounted_is_a_usage_error() {
    let with = |flags: &[&'static str]| -> Vec<&'static str> {
        let mut v = exec_on_node(flags);
        v.extend(["--no-mount-proc", "--", "ps"]);
        v
    };
    for flags in [&["-p", "-m"][..], &["-n"]] {
        let err = usage_error(&with(flags));
        assert!(
            err.contains("--no-mount-proc only changes -p without -m"),
            "{flags:?}: {err}"
        );
    }
    // -a leaves the mount namespace out on a target without a container
    // identity, which only the agent knows: taken, and on to the agent.
    for flags in [&["-a"][..], &["-a", "-m"], &["-p", "--tools", "agent"]] {
        let o = kns(&with(flags));
        assert!(
            stderr(&o).contains("cannot reach the agent"),
            "{flags:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn the_agents_tools_with_the_mount_namespace_is_a_usage_error() {
    let err = usage_error(&exec_on_node(&["-n", "-m", "--tools", "agent", "--", "ss"]));
    assert!(err.contains("--tools agent and -m exclude each other"), "{err}");
}

#[test]
fn dash_n_with_a_name_points_to_namespace_flag() {
    let err = usage_error(&[
        "exec",
        "--agent",
        "unix:///x.sock",
        "-n",
        "prod",
        "pid/1",
        "--",
        "true",
    ]);
    assert!(err.contains("--namespace prod"), "{err}");
}

#[test]
fn bad_target_is_a_usage_error() {
    let err = usage_error(&["exec", "--agent", "unix:///x.sock", "pid/abc", "-n", "--", "true"]);
    assert!(err.contains("not a PID"), "{err}");
}

#[test]
fn unreachable_agent_fails_with_a_hint() {
    let o = kns(&[
        "exec",
        "--agent",
        "unix:///nonexistent/kns.sock",
        "node",
        "-n",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert!(
        err.contains("cannot reach the agent at unix:///nonexistent/kns.sock"),
        "{err}"
    );
    assert!(err.contains("Hint:"), "{err}");
}

#[test]
fn help_teaches_the_namespace_flags() {
    let o = kns(&["exec", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for s in [
        "cannot reach a dependency",
        "-n (net)",
        "--no-mount-proc",
        "Examples:",
    ] {
        assert!(help.contains(s), "--help lacks {s:?}:\n{help}");
    }
}

#[test]
fn dash_it_from_kubectl_exec_is_refused_with_the_fix() {
    for it in [&["-it"][..], &["-i", "-t"]] {
        let mut args = exec_on_node(it);
        args.extend_from_slice(&["--", "sh"]);
        let o = kns(&args);
        assert_eq!(o.status.code(), Some(2), "{it:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("-i is the IPC namespace here"), "{err}");
        assert!(err.contains("not kubectl's --stdin"), "{err}");
        assert!(err.contains("--ipc -t"), "{err}");
    }
    // Spelled out, the IPC namespace is taken at its word: the agent is tried.
    let o = kns(&exec_on_node(&["--ipc", "-t", "--", "sh"]));
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(!stderr(&o).contains("IPC namespace here"), "{}", stderr(&o));
}

#[test]
fn dash_i_with_other_namespaces_runs_with_a_note() {
    let o = kns(&[
        "exec",
        "--agent",
        "unix:///nonexistent.sock",
        "node",
        "-n",
        "-it",
        "--",
        "sh",
    ]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("note: -i is the IPC namespace here"),
        "{}",
        stderr(&o)
    );

    // Data piped in with -i (kubectl's stdin flag) would be dropped: say so.
    let o = std::process::Command::new(kns_tests::bins::plugin())
        .args([
            "exec",
            "--agent",
            "unix:///nonexistent.sock",
            "node",
            "-n",
            "-i",
            "--",
            "cat",
        ])
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(stderr(&o).contains("add --stdin"), "{}", stderr(&o));
}

#[test]
fn timeouts_take_kubectl_durations() {
    let o = kns(&["install", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("[default: 5m]"));
    let o = kns(&["install", "--timeout", "60x"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("`60x`: unknown unit `x`"), "{err}");
    assert!(err.contains("90s, 2m, 1h"), "{err}");
    // Accepted: the command goes on to the cluster (none here), not a usage error.
    for ok in ["60s", "1m30s", "500ms", "90"] {
        let o = kns(&[
            "install",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--timeout",
            ok,
        ]);
        assert_eq!(o.status.code(), Some(255), "{ok}: {}", stderr(&o));
    }
}

#[test]
fn ls_and_audit_with_n_point_to_namespace() {
    let err = usage_error(&["ls", "-n", "prod", "web"]);
    assert!(
        err.contains("Hint: ls looks at every kind of namespace at once, so it has no -n")
            && err.contains("--namespace NS or the NS/POD form"),
        "{err}"
    );
    let err = usage_error(&["audit", "-n", "prod"]);
    assert!(
        err.contains("Hint: audit looks at every kind") && err.contains("-A"),
        "{err}"
    );
}

#[test]
fn commands_about_the_agents_with_namespace_point_to_agent_namespace() {
    // Before any cluster is asked: a mistake in the command line.
    for command in ["status", "version", "install", "uninstall"] {
        let err = usage_error(&[command, "--namespace", "kubectl-ns-system"]);
        assert!(
            err.contains(&format!("{command} is about the kubectl-ns agents"))
                && err.contains("--namespace kubectl-ns-system names the namespace of pods to enter")
                && err.contains("Hint: if the agents run in that namespace, say --agent-namespace"),
            "{err}"
        );
    }
}

/// `exec web -n -- true` against an API server at https://127.0.0.1:`port`
/// (a kubeconfig with a token user); fails unless it exits 255, and
/// returns its stderr.
fn exec_with_api_server_at(port: u16) -> String {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters:\n- name: c\n  cluster:\n    server: \
             https://127.0.0.1:{port}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  \
             user: {{token: t}}\n"
        ),
    )
    .unwrap();
    let o = kns(&[
        "exec",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "web",
        "-n",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    stderr(&o)
}

/// A cluster nobody serves: the error names the API server, as kubectl's
/// "The connection to the server … was refused" does.
#[test]
fn an_unreachable_api_server_is_named() {
    // Bound and dropped: a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = exec_with_api_server_at(port);
    assert!(
        err.contains(&format!(
            "Hint: the connection to the API server at https://127.0.0.1:{port}/ failed"
        )),
        "{err}"
    );
}

/// An API server that accepts the connection and never answers is not
/// taken for a silent agent, which was never asked.
#[test]
fn a_silent_api_server_is_not_taken_for_the_agent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = exec_with_api_server_at(port);
    drop(listener);
    assert!(
        err.contains(&format!(
            "no answer within 30 s while reaching the target through the API server at https://127.0.0.1:{port}/"
        )),
        "{err}"
    );
}

#[test]
fn a_command_without_its_separator_is_shown_where_it_goes() {
    let o = kns(&["exec", "--agent", "unix:///x.sock", "pid/1", "-n", "ss"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("-n -- ss"), "{err}");
    // Not read as a Kubernetes namespace named after the command.
    assert!(!err.contains("--namespace ss"), "{err}");
}

#[test]
fn a_pod_target_with_agent_but_no_kubeconfig_names_the_direct_forms() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(kns_tests::bins::plugin())
        .args(["exec", "--agent", "unix:///x.sock", "mypod", "-n", "--", "ss"])
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("container/ID"), "{}", stderr(&o));
}

#[test]
fn kubens_habits_are_told_what_this_kubectl_ns_is() {
    for word in ["kube-system", "-"] {
        let o = kns(&[word]);
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        assert!(
            err.contains("kubens") && err.contains("kubectl plugin list"),
            "{err}"
        );
    }
    // `version` says which binary runs, for when one `ns` plugin shadows another.
    let o = kns(&["version", "--agent", "unix:///nonexistent.sock"]);
    let path = kns_tests::bins::plugin();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&*path.to_string_lossy()),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn an_agent_that_accepts_and_never_answers_is_reported_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stuck.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let addr = format!("unix://{}", socket.display());
    let o = kns(&["exec", "--agent", &addr, "node", "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("the agent did not answer within 30 s"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_container_flag_on_a_target_that_is_no_pod_is_a_usage_error() {
    let err = usage_error(&[
        "exec",
        "--agent",
        "unix:///x.sock",
        "container/abcd",
        "-c",
        "app",
        "-n",
        "--",
        "true",
    ]);
    assert!(err.contains("-c app names a container of a pod"), "{err}");
}

#[test]
fn many_pod_flags_without_a_selector_are_a_usage_error() {
    for flag in [&["-o", "json"][..], &["-A"]] {
        let mut args = exec_on_node(&["-n"]);
        args.extend_from_slice(flag);
        args.extend_from_slice(&["--", "ss"]);
        let err = usage_error(&args);
        assert!(err.contains("goes with -l SELECTOR"), "{err}");
    }
}

#[test]
fn a_typo_of_a_command_gets_one_hint_after_clap_s_tip() {
    let err = usage_error(&["exce"]);
    assert!(
        err.contains("a similar subcommand exists: 'exec'")
            && err.contains("`kubectl ns exec` is the nearest"),
        "{err}"
    );
    assert_eq!(err.matches("Hint:").count(), 1, "{err}");
    assert!(!err.contains("runs node tools inside"), "{err}");
}

#[test]
fn no_kubeconfig_and_no_cluster_says_where_it_looked() {
    let home = tempfile::tempdir().expect("tempdir");
    let o = std::process::Command::new(kns_tests::bins::plugin())
        .args(["exec", "web-1", "-n", "--", "ss"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl-ns");
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    let looked = format!("no kubeconfig at {}/.kube/config", home.path().display());
    assert!(err.contains(&looked) && !err.contains("'\""), "{err}");
}
