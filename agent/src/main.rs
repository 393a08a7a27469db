//! `kubectl-ns-agent`: the node agent binary.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kns_agent::access::audit::Audit;
use kns_agent::access::authz::Access;
use kns_agent::access::clientcert::ClientCerts;
use kns_agent::access::kubeclient::{KubeClient, KubeConfig};
use kns_agent::access::policy::Policies;
use kns_agent::enter::cgroup::Containment;
use kns_agent::enter::request::Node;
use kns_agent::listen::{self, Listen};
use kns_agent::metrics::Metrics;
use kns_agent::metrics::serve::{self, MetricsListen};
use kns_agent::record::Store;
use kns_agent::rpc::service::{AgentService, Guard, Limits};
use kns_agent::sys::spawner::Spawner;
use kns_agent::target::cri::Cri;
use kns_agent::target::resolve::Resolver;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The kubectl-ns node agent.
///
/// Runs on every node (a DaemonSet with hostPID). It resolves a container to
/// its host process through the CRI, joins the namespaces a client asks for,
/// and runs a tool from the node's filesystem there, streaming its I/O.
///
/// Callers over TCP (the API server's port-forward) are authenticated with
/// a TokenReview of the bearer token they send and authorized with a
/// SubjectAccessReview per target (`create pods/exec` on the pod; for the
/// node, `create nodes/exec` in API group kubectl-ns.io); unix socket peers
/// must be root. Every session and denial is one JSON line on stdout.
#[derive(Debug, Parser)]
#[command(name = "kubectl-ns-agent", version)]
struct Args {
    /// Where to listen: unix:///PATH, tcp://IP:PORT or tls://IP:PORT
    /// (repeatable). A unix socket is 0600 from its first moment; its
    /// directory, when missing, is created 0700. On tls:// callers
    /// authenticate with a client certificate the cluster's client CA signed
    /// (kube-system/extension-apiserver-authentication); on tcp:// with a
    /// bearer token.
    #[arg(long = "listen", value_name = "ADDR", default_value = listen::DEFAULT_LISTEN)]
    listen: Vec<Listen>,

    /// The CRI socket (path or unix:// URL). Default: the first of the usual
    /// containerd, CRI-O, k3s, k0s, microk8s and cri-dockerd sockets that answers.
    #[arg(long, env = "KNS_CRI_ENDPOINT", value_name = "ENDPOINT")]
    cri_endpoint: Option<String>,

    /// The node reference process: tools come from its mount namespace and
    /// its namespaces count as the host's. PID 1 with hostPID. It must
    /// outlive the agent, which stops when it exits.
    #[arg(long, env = "KNS_NODE_PID", value_name = "PID", default_value_t = 1)]
    node_pid: i32,

    /// Send an HTTP/2 ping to each client after this many idle seconds and
    /// drop the connection, ending its sessions, when no answer comes within
    /// as many again: a laptop gone to sleep or a cut link must not hold a
    /// tool open in a pod forever. 0 turns it off.
    #[arg(long, env = "KNS_KEEPALIVE", value_name = "SECONDS", default_value_t = 30)]
    keepalive: u64,

    /// End every session after this many seconds, whatever it does (the
    /// client is told why). 0: no limit.
    #[arg(
        long,
        env = "KNS_MAX_SESSION_AGE",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    max_session_age: u64,

    /// At most this many sessions at once; more are refused with
    /// RESOURCE_EXHAUSTED naming this limit. Each session holds a few MiB
    /// of buffers and a process tree on the node.
    #[arg(long, env = "KNS_MAX_SESSIONS", value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions: u32,

    /// Cap the memory of all sessions together (bytes, or with a Ki, Mi,
    /// Gi, K, M or G suffix as in Kubernetes), apart from the agent's own:
    /// a tool past it is killed by the kernel and its user told why, and
    /// the agent lives on. Keep it below the agent container's memory
    /// limit, which counts both. Unset: sessions share the agent's limit.
    #[arg(long, env = "KNS_SESSIONS_MEMORY", value_name = "SIZE", value_parser = parse_size)]
    sessions_memory: Option<u64>,

    /// The API server that checks identities and rights. Default: the
    /// in-cluster address (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT).
    #[arg(long, env = "KNS_KUBE_API", value_name = "URL")]
    kube_api: Option<String>,

    /// The CA bundle the API server's certificate must chain to. Default:
    /// the pod's ServiceAccount ca.crt.
    #[arg(long, env = "KNS_KUBE_CA", value_name = "FILE")]
    kube_ca: Option<std::path::PathBuf>,

    /// The agent's own bearer token for its reviews, read again for each.
    /// Default: the pod's ServiceAccount token.
    #[arg(long, env = "KNS_KUBE_TOKEN_FILE", value_name = "FILE")]
    kube_token_file: Option<std::path::PathBuf>,

    /// This node's Kubernetes name, for the node right
    /// (`create nodes/exec` on it). The DaemonSet sets it from spec.nodeName.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,

    /// Check nobody: whoever reaches the agent may do anything on the node.
    /// For clusters without the TokenReview and SubjectAccessReview APIs;
    /// logged at start and shown by `kubectl ns status`.
    #[arg(long, env = "KNS_INSECURE_SKIP_AUTHZ",
          value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    insecure_skip_authz: bool,

    /// Also append the audit trail (one JSON line per session start and
    /// end, and per denial; always on stdout) to this file.
    #[arg(long, env = "KNS_AUDIT_LOG", value_name = "PATH")]
    audit_log: Option<std::path::PathBuf>,

    /// The node operator's policy (YAML; in a cluster the optional
    /// kubectl-ns-policy ConfigMap, mounted): target namespaces, node
    /// targets, denied namespace kinds, a command allow-list, session
    /// duration, sessions per user and per node, read-only. Re-read every
    /// few seconds; an invalid one keeps the last good policy. A missing
    /// file allows what authorization allows.
    #[arg(long, env = "KNS_POLICY", value_name = "FILE")]
    policy: Option<std::path::PathBuf>,

    /// Where the sessions the policy records (its `recording:` section)
    /// are written, one asciicast file per session, readable by root alone;
    /// created 0700 when missing. Nothing is written unless the policy
    /// asks.
    #[arg(
        long,
        env = "KNS_RECORDINGS_DIR",
        value_name = "DIR",
        default_value = "/var/log/kubectl-ns/sessions"
    )]
    recordings_dir: std::path::PathBuf,
    /// Serve Prometheus metrics (OpenMetrics text, GET /metrics) on this
    /// address, apart from the session API; `off` serves none. They count
    /// sessions, denials, CRI errors and policy reloads, and name no user,
    /// pod or command.
    #[arg(
        long,
        env = "KNS_METRICS_LISTEN",
        value_name = "IP:PORT|off",
        default_value = "off"
    )]
    metrics_listen: MetricsListen,

    /// Log format.
    #[arg(long, env = "KNS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Exit 0 when the agent at the (first) --listen address serves, 1 if
    /// not: the DaemonSet's readiness probe.
    Probe,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KNS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let unusable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "cannot use process {pid} as the node reference (its mount namespace gives the node's tools): {e}\n\
             Hint: run the agent with hostPID and enough privilege to read /proc/{pid}/ns, or point \
             --node-pid (KNS_NODE_PID) at a process in the host's namespaces",
            pid = args.node_pid
        )
    };
    let node = Node::probe(args.node_pid).map_err(|e| unusable(&e))?;
    // The process probed is the one watched: its own pidfd.
    let reference = node
        .pidfd
        .try_clone()
        .and_then(kns_agent::sys::async_fd)
        .map_err(|e| unusable(&e))?;
    let metrics = Metrics::new();
    // Bound first: a port taken is an error at start, before anything runs.
    let scrapes = match args.metrics_listen {
        MetricsListen::On(addr) => Some(serve::bind(addr).await?),
        MetricsListen::Off => None,
    };
    let probe = match &args.cri_endpoint {
        Some(ep) => Cri::connect(ep, &metrics).await,
        None => Cri::detect(&metrics).await,
    };
    // Not fatal: the runtime may start later (it is asked again on each
    // container request), and running containers can still be found by
    // their cgroups meanwhile.
    let cri = probe
        .inspect_err(|e| tracing::warn!(error = %e, "no CRI runtime answered; container targets will be found by scanning /proc cgroups until one does"))
        .ok();
    if let Some(c) = &cri {
        tracing::info!(endpoint = c.endpoint(), runtime = %c.runtime, "CRI runtime");
    }
    let resolver = Resolver::new(
        node.pid,
        node.start_time,
        args.cri_endpoint.clone(),
        cri,
        metrics.clone(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let spawner = Spawner::start().context("cannot start the spawner thread")?;
    let limits = Limits {
        max_age: (args.max_session_age > 0).then(|| Duration::from_secs(args.max_session_age)),
        max_sessions: args.max_sessions,
    };
    let access = access(&args)?;
    let certs = access.certs();
    let audit = Audit::open(args.audit_log.as_deref())?;
    let containment = Containment::setup(node.pid, args.sessions_memory);
    let cgroups = containment.sessions.clone();
    let policy = Arc::new(Policies::load(args.policy.clone(), metrics.clone()));
    policy.clone().watch(POLICY_RELOAD);
    let service = AgentService::new(
        resolver,
        node,
        stop_rx.clone(),
        spawner,
        containment,
        limits,
        Guard {
            access,
            audit,
            policy,
            recordings: Store::new(args.recordings_dir.clone()),
            metrics: metrics.clone(),
        },
    );
    let stopping = stop_on(stop_tx, reference)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node_pid = args.node_pid,
        node_name = args.node_name.as_deref().unwrap_or(""),
        insecure_skip_authz = args.insecure_skip_authz,
        "kubectl-ns-agent starting"
    );
    if let Some(listener) = scrapes {
        tracing::info!(address = %listener.local_addr()?, "serving metrics at /metrics");
        tokio::spawn(serve::serve(listener, metrics, stop_rx.clone()));
    }
    let keepalive = (args.keepalive > 0).then(|| Duration::from_secs(args.keepalive));
    listen::serve(&args.listen, service, stop_rx, keepalive, certs).await?;
    // Connection tasks may still hold the service (and so the subtree) when
    // the process exits: remove it now that the sessions have ended.
    if let Some(c) = cgroups {
        // It waits for teardowns that run on blocking threads; this thread
        // is the runtime's only one.
        let _ = tokio::task::spawn_blocking(move || c.close()).await;
    }
    if stopping.await.unwrap_or(false) {
        anyhow::bail!(
            "the node reference process {pid} exited, so its PID may now name any process, whose \
             namespaces would pass for the node's\n\
             Hint: give --node-pid (KNS_NODE_PID) a process that outlives the agent (PID 1 with hostPID)",
            pid = args.node_pid
        );
    }
    Ok(())
}

/// Turns `stop` true on SIGTERM or SIGINT, or when the node reference
/// process behind `reference` (a pidfd) exits, which ends the sessions and
/// the listeners. The task answers whether the node reference was lost.
fn stop_on(
    stop: watch::Sender<bool>,
    reference: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
) -> anyhow::Result<tokio::task::JoinHandle<bool>> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(tokio::spawn(async move {
        let lost = tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: ending sessions and shutting down");
                false
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: ending sessions and shutting down");
                false
            }
            // A pidfd reads ready once its process has exited.
            Ok(_) = reference.readable() => {
                tracing::error!("the node reference process exited: ending sessions and shutting down");
                true
            }
        };
        let _ = stop.send(true);
        lost
    }))
}

/// How often the policy file is read again. The kubelet itself updates a
/// mounted ConfigMap only every minute or so.
const POLICY_RELOAD: Duration = Duration::from_secs(5);

/// Who may use the agent: the API server's reviews, or nobody checked with
/// `--insecure-skip-authz`.
fn access(args: &Args) -> anyhow::Result<Access> {
    if args.insecure_skip_authz {
        tracing::warn!(
            "--insecure-skip-authz: NO AUTHENTICATION OR AUTHORIZATION. Whoever reaches this agent \
             (anyone allowed to port-forward to its pod) is root on this node"
        );
        return Ok(Access::new(
            None,
            Arc::new(ClientCerts::new(None)?),
            args.node_name.clone(),
            true,
        ));
    }
    let config = KubeConfig::resolve(
        args.kube_api.clone(),
        args.kube_ca.clone(),
        args.kube_token_file.clone(),
    );
    let client = match config {
        Some(c) => Some(KubeClient::new(&c).with_context(|| {
            format!(
                "cannot set up the client for the API server {} that checks callers \
                 (--kube-api, --kube-ca, --kube-token-file; or --insecure-skip-authz)",
                c.url
            )
        })?),
        None => {
            tracing::warn!(
                "no API server (not in a cluster, no --kube-api): only root on this node, over a unix socket, \
                 can use this agent"
            );
            None
        }
    };
    if args.node_name.is_none() {
        tracing::warn!("no --node-name (NODE_NAME): node targets will be refused to everyone but local root");
    }
    let certs = Arc::new(ClientCerts::new(client.clone())?);
    Ok(Access::new(client, certs, args.node_name.clone(), false))
}

/// A size in bytes, with Kubernetes' quantity suffixes (binary Ki, Mi, Gi;
/// decimal K, M, G).
fn parse_size(s: &str) -> Result<u64, String> {
    let units = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (digits, unit) = units
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|d| (d, *m)))
        .unwrap_or((s, 1u64));
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!("{s:?} is not a size: give bytes, or a number with Ki, Mi, Gi, K, M or G (as 448Mi)")
        })
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    // Blocking threads open pidfds, make cgroups and wait for forks: a few
    // per starting session, bounded so a burst cannot make hundreds.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(32)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl-ns-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Cmd::Probe) = args.command {
        let listen = args.listen.first().cloned().expect("--listen has a default");
        return match rt.block_on(listen::probe(&listen)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kubectl-ns-agent probe: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubectl-ns-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
