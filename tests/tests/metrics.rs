//! The agent's Prometheus metrics, scraped by a real Prometheus (Debian's
//! package, which scripts/deps installs): sessions and a denial this test
//! causes show up in Prometheus' query API with the numbers caused; the
//! metrics port answers no gRPC and the session port no scrape.
//!
//! The agent listens in its own network namespace (as in its pod), so the
//! test reaches it from a thread moved into that namespace, and Prometheus
//! runs there too, reaching the agent as a scraper on the pod network
//! would.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kns_proto::agent::VersionRequest;
use kns_proto::agent::agent_client::AgentClient;
use kns_tests::agent::{AGENT_PORT, Agent};
use kns_tests::{bins, http_in_netns, require_root, wait_until};

const METRICS_PORT: u16 = 7471;
/// Prometheus' own port, in the agent's network namespace.
const PROMETHEUS_PORT: u16 = 9090;

fn scrape(agent: &Agent) -> String {
    http_in_netns(agent.pid(), METRICS_PORT, "GET /metrics HTTP/1.0")
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    pid: i32,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus in the agent's network namespace, scraping its metrics
    /// port every second.
    fn start(agent: &Agent) -> Prometheus {
        let version = Command::new("prometheus").arg("--version").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "this test needs a real Prometheus: `apt-get install prometheus` (scripts/deps installs it): {version:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: kubectl-ns-agent\n    static_configs:\n      \
                 - targets: [\"127.0.0.1:{METRICS_PORT}\"]\n"
            ),
        )
        .unwrap();
        let child = agent
            .in_netns("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            pid: agent.pid(),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
    }

    /// The instant vector of a PromQL query, as (labels, value) pairs;
    /// `None` while Prometheus does not answer.
    fn query(&self, promql: &str) -> Option<Vec<(serde_json::Value, f64)>> {
        let answer = http_in_netns(
            self.pid,
            PROMETHEUS_PORT,
            &format!("GET /api/v1/query?query={} HTTP/1.0", encode(promql)),
        );
        let (_, body) = answer.split_once("\r\n\r\n")?;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        assert_eq!(v["status"], "success", "{promql}: {v}");
        let result = v["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|s| {
                    let value = s["value"][1].as_str().and_then(|n| n.parse().ok());
                    (s["metric"].clone(), value.expect("a sample value"))
                })
                .collect(),
        )
    }

    /// Waits until `promql` gives one series of value `want`.
    fn expect(&self, promql: &str, want: f64) {
        let mut last = None;
        let ok = kns_tests::poll_until(Duration::from_secs(60), Duration::from_millis(500), || {
            last = self.query(promql);
            last.as_ref().is_some_and(|r| r.len() == 1 && r[0].1 == want)
        });
        assert!(
            ok,
            "{promql}: expected {want}, Prometheus says {last:?}\n{}",
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The agent's Version over gRPC on 127.0.0.1:`port`, in its network
/// namespace.
fn grpc_version(pid: i32, port: u16) -> Result<String, String> {
    kns_tests::in_netns(pid, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            AgentClient::new(ch)
                .version(VersionRequest {})
                .await
                .map(|r| r.into_inner().version)
                .map_err(|s| format!("{s:?}"))
        })
    })
}

fn policy(dir: &Path) -> String {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, "commands: [\"true\"]\n").unwrap();
    path.display().to_string()
}

#[test]
fn prometheus_scrapes_the_sessions_and_denials_the_test_caused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "KNS_METRICS_LISTEN".to_owned(),
            format!("127.0.0.1:{METRICS_PORT}"),
        ),
        ("KNS_POLICY".to_owned(), policy(dir.path())),
    ];
    let agent = Agent::start_tcp_env(None, &env);
    assert!(
        kns_tests::listens_on_loopback(agent.pid(), METRICS_PORT),
        "{}",
        agent.logs()
    );
    for _ in 0..3 {
        let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
        assert!(o.status.success(), "{}", bins::stderr(&o));
    }
    // The policy allows `true` alone.
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["id"]);
    assert_eq!(o.status.code(), Some(255), "{}", bins::stderr(&o));
    assert!(bins::stderr(&o).contains("commands"), "{}", bins::stderr(&o));

    // The agent's own text first: a session's end is counted just after
    // its client saw it end.
    let ended = wait_until(Duration::from_secs(10), || {
        scrape(&agent).contains("\nkubectl_ns_sessions_ended_total{end=\"exited\"} 3\n")
    });
    let text = scrape(&agent);
    assert!(ended, "{text}");
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("application/openmetrics-text"), "{text}");
    for line in [
        "kubectl_ns_sessions_started_total 3",
        "kubectl_ns_sessions_active 0",
        "kubectl_ns_denials_total{kind=\"policy\",rule=\"commands\"} 1",
        "kubectl_ns_policy_reloads_total 1",
        "kubectl_ns_session_duration_seconds_count 3",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line} in:\n{text}");
    }
    assert!(
        !text.contains("=\"id\""),
        "the refused command in a label:\n{text}"
    );
    let other = http_in_netns(agent.pid(), METRICS_PORT, "GET / HTTP/1.0");
    assert!(other.starts_with("HTTP/1.0 404"), "{other}");

    let prometheus = Prometheus::start(&agent);
    prometheus.expect("up{job=\"kubectl-ns-agent\"}", 1.0);
    prometheus.expect("kubectl_ns_sessions_started_total", 3.0);
    prometheus.expect("kubectl_ns_sessions_ended_total{end=\"exited\"}", 3.0);
    prometheus.expect("sum(kubectl_ns_denials_total)", 1.0);
    prometheus.expect("kubectl_ns_denials_total{kind=\"policy\",rule=\"commands\"}", 1.0);

    // One more of each, seen at the next scrapes.
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
    assert!(o.status.success(), "{}", bins::stderr(&o));
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["id"]);
    assert_eq!(o.status.code(), Some(255), "{}", bins::stderr(&o));
    prometheus.expect("kubectl_ns_sessions_started_total", 4.0);
    prometheus.expect("sum(kubectl_ns_denials_total)", 2.0);
    prometheus.expect("kubectl_ns_sessions_active", 0.0);
}

#[test]
fn the_metrics_port_answers_no_grpc_and_the_session_port_no_scrape() {
    require_root();
    let env = [(
        "KNS_METRICS_LISTEN".to_owned(),
        format!("127.0.0.1:{METRICS_PORT}"),
    )];
    let agent = Agent::start_tcp_env(None, &env);
    assert!(
        kns_tests::listens_on_loopback(agent.pid(), METRICS_PORT),
        "{}",
        agent.logs()
    );
    // The session port answers gRPC (Version needs no identity)…
    let v = grpc_version(agent.pid(), AGENT_PORT);
    assert!(v.is_ok(), "{v:?}\n{}", agent.logs());
    // …the metrics port does not…
    let v = grpc_version(agent.pid(), METRICS_PORT);
    assert!(v.is_err(), "the metrics port answered gRPC: {v:?}");
    // …and serves the scrape the session port does not.
    assert!(scrape(&agent).contains("kubectl_ns_sessions_started_total"));
    let on_session_port = http_in_netns(agent.pid(), AGENT_PORT, "GET /metrics HTTP/1.0");
    assert!(
        !on_session_port.contains("kubectl_ns_") && !on_session_port.contains("# EOF"),
        "the session port served metrics: {on_session_port}"
    );
    // The agent still serves sessions after both.
    let o = bins::exec(&agent.addr(), "node", &["-n"], &["true"]);
    assert!(o.status.success(), "{}", bins::stderr(&o));
}

#[test]
fn a_bad_or_taken_metrics_address_stops_the_agent_with_the_flag_named() {
    require_root();
    let o = Command::new(bins::agent())
        .args(["--metrics-listen", "localhost:7471", "--node-pid"])
        .arg(std::process::id().to_string())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--metrics-listen") && err.contains("IP:PORT"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bins::agent())
        .arg("--listen")
        .arg(format!("unix://{}", dir.path().join("agent.sock").display()))
        .args(["--metrics-listen", &addr, "--node-pid"])
        .arg(std::process::id().to_string())
        .env("KNS_CRI_ENDPOINT", dir.path().join("no-cri.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot listen for metrics scrapes on {addr}"))
            && err.contains("--metrics-listen"),
        "{err}"
    );
    assert!(
        !dir.path().join("agent.sock").exists(),
        "the agent served sessions meanwhile"
    );
}
