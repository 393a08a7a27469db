//! Command-line definitions: parsed here, validated into typed requests by
//! each command before anything is sent. `target` parses what to enter;
//! `hint` says what to use after a kubectl habit that does not apply;
//! `replay` holds replay's arguments.

mod hint;
mod replay;
mod sessions;
pub mod target;

pub use hint::hint_for;
pub use replay::{ReplayArgs, ReplayOutput};
pub use sessions::{SessionsAction, SessionsArgs};

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cli::target::Target;
use crate::error::{Failure, IPC_FLAG, UsageError};

/// Run the node's own tools inside exactly the namespaces of a container.
///
/// kubectl-ns asks the kubectl-ns agent on the node to join the namespaces
/// you pick and run a tool from the node there: `ss` inside a distroless
/// pod's network namespace, `ps` inside its PID namespace. No image is
/// pulled and no pod is created per session.
#[derive(Debug, Parser)]
#[command(name = "kubectl-ns", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command from the node inside a target's namespaces.
    ///
    /// Pick namespaces as with nsenter(1). Which one, by symptom:
    ///   cannot reach a dependency, DNS, ports      -n (net)
    ///   stray or zombie processes, who runs what   -p (pid; /proc matches)
    ///   a file the app cannot see                  -m (mnt; tools then come
    ///                                                  from the image)
    ///   a hostname in logs                         -u (uts)
    ///   shared memory, semaphores                  -i (ipc)
    ///   permission denied on a host path           `kubectl ns ls` (user maps)
    ///
    /// Where the tool comes from:
    ///   the node's filesystem (default)            --tools node
    ///   the container's image, as the container    -m
    ///   the agent's image                          --tools agent
    ///     (its toolbox variant has busybox, ip, ss, ps, top, tcpdump,
    ///     strace and dig, for nodes without tools: Talos, Bottlerocket)
    /// -m and --tools agent exclude each other (each names the mount
    /// namespace the tool comes from); -a --tools agent enters every
    /// other kind.
    ///
    /// Examples:
    ///   kubectl ns exec web-1 -n -- ss -lntp
    ///   kubectl ns exec web-1 -n --tools agent -- tcpdump -i eth0 -c 10
    ///   kubectl ns exec prod/web-1 -c app -p -- ps -ef
    ///   kubectl ns exec node/worker-3 -a -t -- bash
    ///   kubectl ns exec --agent unix:///run/kubectl-ns/agent.sock pid/1234 -n -- ip addr
    #[command(verbatim_doc_comment)]
    Exec(ExecArgs),
    /// Show a target's namespace identities next to the node's: compare
    /// first, enter second.
    ///
    /// Examples:
    ///   kubectl ns ls web-1
    ///   kubectl ns ls prod/web-1 -o wide
    ///   kubectl ns ls node/worker-3      # every namespace on the node, like lsns, with its pods
    ///   kubectl ns ls -A -l app=web      # every matching pod's containers
    #[command(verbatim_doc_comment)]
    Ls(LsArgs),
    /// Audit which pods share the node's namespaces: declared in their
    /// specs, observed by the agents, and where the two disagree (drift).
    ///
    /// Every node's agent is asked at once (bounded, with a deadline per
    /// node); pods on nodes no agent answered for are reported as not
    /// observed, never as clean. Exit status: 0, or 1 when a finding of a
    /// kind named in --fail-on exists; 255 when the audit itself failed.
    ///
    /// Examples:
    ///   kubectl ns audit -A
    ///   kubectl ns audit --namespace prod -o wide
    ///   kubectl ns audit -A -o json --fail-on drift,privileged,host-net
    #[command(verbatim_doc_comment)]
    Audit(AuditArgs),
    // Its help is SessionsArgs' doc comment, kept beside its flags.
    Sessions(SessionsArgs),
    Replay(ReplayArgs),
    /// Install the agent DaemonSet (embedded manifests, server-side apply)
    /// and wait for it on every node.
    ///
    /// Examples:
    ///   kubectl ns install --image registry.example/kubectl-ns-agent:0.1.0
    ///   # the toolbox variant (scripts/image --toolbox), for `exec --tools agent`:
    ///   kubectl ns install --image registry.example/kubectl-ns-agent:0.1.0-toolbox
    #[command(verbatim_doc_comment)]
    Install(InstallArgs),
    /// Remove everything `install` created.
    Uninstall(UninstallArgs),
    /// Show which nodes run an agent, its version and readiness (with
    /// --agent: that agent alone).
    Status(StatusArgs),
    /// Print the plugin's version and the agents' (from the cluster, or
    /// the one --agent names).
    Version(VersionArgs),
    /// Print a shell completion script for kubectl-ns called by its own name.
    ///
    /// Under kubectl (1.26 or newer), `kubectl ns <TAB>` completes through
    /// the `kubectl_complete-ns` executable shipped beside kubectl-ns
    /// (a link to it) instead: put both on your PATH.
    ///
    /// Examples:
    ///   source <(kubectl-ns completion bash)
    ///   kubectl-ns completion fish | source
    #[command(verbatim_doc_comment)]
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The agent image (default: the one matching this kubectl-ns).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Do not wait for the agents to become ready.
    #[arg(long)]
    pub no_wait: bool,
    /// Install into --agent-namespace even though it exists and kubectl-ns
    /// did not create it, labelling it to allow privileged pods (which
    /// then applies to every pod in it).
    #[arg(long)]
    pub adopt_namespace: bool,
    /// How long to wait for the rollout: a duration as kubectl takes it
    /// (90s, 2m, 1h, 1m30s, 500ms) or a number of seconds.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Where `exec`'s tool comes from (besides -m, the target's image).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Tools {
    /// The node's filesystem.
    #[default]
    Node,
    /// The agent's own image.
    Agent,
}

/// `exec -l -o`'s formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManyOutput {
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// How to reach the cluster and the agent.
#[derive(Debug, Args, Clone, Default)]
pub struct KubeArgs {
    /// The Kubernetes namespace (exec's -n is the network namespace, as
    /// in nsenter). Default: the kubeconfig context's.
    #[arg(long = "namespace", value_name = "NS", help_heading = "Kubernetes")]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "CONTEXT", help_heading = "Kubernetes")]
    pub context: Option<String>,
    /// The kubeconfig file to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE", help_heading = "Kubernetes")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The namespace the agent DaemonSet runs in.
    #[arg(long, env = "KNS_AGENT_NAMESPACE", value_name = "NS", default_value = crate::kube::resolve::AGENT_NAMESPACE, help_heading = "Kubernetes")]
    pub agent_namespace: String,
    /// The port the agent listens on inside its pod (on 127.0.0.1). Users
    /// whose kubeconfig holds a client certificate and no token reach the
    /// agent's TLS port, the next one (7470).
    #[arg(
        long,
        env = "KNS_AGENT_PORT",
        value_name = "PORT",
        default_value_t = 7469,
        help_heading = "Kubernetes"
    )]
    pub agent_port: u16,
    /// Talk to the agent at ADDR (unix:///PATH or tcp://HOST:PORT) directly,
    /// not through the API server's port-forward: on a node, as its
    /// operator (exec and ls then also take pid/, container/ and node;
    /// status and version report on that agent; install and uninstall
    /// refuse it).
    #[arg(long, env = "KNS_AGENT", value_name = "ADDR")]
    pub agent: Option<String>,
}

/// Namespace flags, as nsenter(1) spells them.
#[derive(Debug, Args, Clone, Default)]
pub struct NsFlags {
    /// Enter the network namespace (this -n is not kubectl's --namespace).
    #[arg(short = 'n', long = "net", help_heading = "Namespaces")]
    pub net: bool,
    /// Enter the PID namespace; /proc is remounted to match.
    #[arg(short = 'p', long = "pid", help_heading = "Namespaces")]
    pub pid: bool,
    /// Enter the mount namespace, root and working directory: tools then
    /// come from the container's image, not the node.
    #[arg(short = 'm', long = "mount", help_heading = "Namespaces")]
    pub mount: bool,
    /// Enter the UTS namespace (hostname).
    #[arg(short = 'u', long = "uts", help_heading = "Namespaces")]
    pub uts: bool,
    /// Enter the IPC namespace.
    #[arg(short = 'i', long = "ipc", help_heading = "Namespaces")]
    pub ipc: bool,
    /// Enter the user namespace.
    #[arg(short = 'U', long = "user", help_heading = "Namespaces")]
    pub user: bool,
    /// Enter the cgroup namespace.
    #[arg(short = 'C', long = "cgroup", help_heading = "Namespaces")]
    pub cgroup: bool,
    /// Enter the time namespace.
    #[arg(short = 'T', long = "time", help_heading = "Namespaces")]
    pub time: bool,
    /// Enter all of them.
    #[arg(short = 'a', long = "all", help_heading = "Namespaces")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// What to enter: POD, pod/POD, NS/POD, node/NODE; with --agent also
    /// pid/PID, container/ID, node. Or -l SELECTOR for many pods.
    #[arg(required_unless_present = "selector")]
    pub target: Option<Target>,
    /// Run in every pod matching this label selector (in --namespace, or
    /// -A), concurrently, each line prefixed [NS/POD/CONTAINER]; then a
    /// summary. Exit status: 0 when all exited 0, else the first non-zero
    /// in NS/POD order. No -t or --stdin.
    #[arg(
        short = 'l',
        long = "selector",
        value_name = "SELECTOR",
        conflicts_with = "target",
        help_heading = "Many pods"
    )]
    pub selector: Option<String>,
    /// With -l: the pods of every namespace.
    #[arg(
        short = 'A',
        long = "all-namespaces",
        requires = "selector",
        help_heading = "Many pods"
    )]
    pub all_namespaces: bool,
    /// With -l: how many pods run at once.
    #[arg(long, value_name = "N", default_value_t = 16, requires = "selector",
          value_parser = clap::value_parser!(u16).range(1..), help_heading = "Many pods")]
    pub max_concurrent: u16,
    /// With -l: `json` prints one JSON object per pod (namespace, pod,
    /// container, node, exit_code, signal, stdout, stderr, error) instead.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        requires = "selector",
        help_heading = "Many pods"
    )]
    pub output: Option<ManyOutput>,
    /// The pod's container (default: the kubectl.kubernetes.io/default-container
    /// annotation, else the first, with a notice as kubectl gives). Init and
    /// ephemeral containers too.
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    #[command(flatten)]
    pub ns: NsFlags,
    /// Allocate a terminal (implies --stdin).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Pass stdin to the command.
    #[arg(long)]
    pub stdin: bool,
    /// Set an environment variable (repeatable); the default is a minimal
    /// environment with a system PATH.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory for the command.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// With -p and without -m, keep the node's /proc instead of mounting one
    /// that matches the target's PID namespace.
    #[arg(long)]
    pub no_mount_proc: bool,
    /// With -m, run the container image's binary as root on the node, with
    /// the agent's capabilities, instead of with the container's own
    /// identity (uid, groups, capabilities, no_new_privs). The agent logs
    /// it. Only for images you trust: a trojaned binary becomes node root.
    #[arg(long)]
    pub privileged: bool,
    /// Where the tool comes from: `node` (its filesystem), or `agent` (the
    /// agent's image: deploy the toolbox variant for busybox, ip, ss, ps,
    /// tcpdump, strace, dig). Runs as node root either way. Not with -m,
    /// which runs the container image's own binary.
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t)]
    pub tools: Tools,
    /// The command and its arguments, after --.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl ExecArgs {
    /// `-it` is how kubectl users ask for a shell, but `-i` is nsenter's IPC
    /// flag here. `-i -t` with no other namespace would enter only the IPC
    /// namespace, which is almost never what was meant: refused (a usage
    /// error) with the fix. When `-i` comes with `-t` and other namespaces,
    /// or without `--stdin` while data is piped in, it runs as asked with a
    /// note saying what `-i` did. `--ipc` spelled out is taken at its word.
    /// `argv` is the raw command line; `stdin_is_data` tells whether stdin
    /// is a pipe or a file.
    pub fn ipc_habit(&self, argv: &[String], stdin_is_data: bool) -> Result<Option<String>, Failure> {
        let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
        let short_i = self.ns.ipc && !argv[..end].iter().any(|a| a == "--ipc");
        if !short_i || self.stdin {
            return Ok(None);
        }
        let ns = &self.ns;
        let others = ns.net || ns.pid || ns.mount || ns.uts || ns.user || ns.cgroup || ns.time || ns.all;
        Ok(match (self.tty, others) {
            (true, false) => return Err(UsageError::IpcWithTty.into()),
            (true, true) => Some(format!(
                "note: {IPC_FLAG}: the IPC namespace is entered too; -t already passes stdin (write --ipc to silence this)"
            )),
            (false, _) if stdin_is_data => Some(format!(
                "note: {IPC_FLAG}: the data piped in is not passed to the command; add --stdin for that (write --ipc to silence this)"
            )),
            (false, _) => None,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// What to inspect: POD (every running container), pod/POD, NS/POD,
    /// node/NODE; with --agent also pid/PID, container/ID, node. Without
    /// one: every pod of --namespace (or -A, -l), one row per container.
    pub target: Option<Target>,
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Output format (wide adds the namespaces' inode numbers to a pod's
    /// table; to one process's, their devices, the node reference PID, its
    /// cgroup and time offsets).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// Which pods a many-pod command covers, and how it asks their nodes'
/// agents.
#[derive(Debug, Args, Clone)]
pub struct FanoutArgs {
    /// The pods of every namespace.
    #[arg(short = 'A', long = "all-namespaces", conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only pods matching this label selector.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    #[command(flatten)]
    pub bounds: NodeBounds,
}

/// How many nodes' agents are asked at once, and how long each may take.
#[derive(Debug, Args, Clone)]
pub struct NodeBounds {
    /// How long one node's agent may take to answer.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub node_timeout: Duration,
    /// How many nodes are asked at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_nodes: u16,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// -A, -l: with a label selector, unknown workloads are not reported
    /// (containers outside the selection are not unknown).
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Only this node (with --agent: the node that agent runs on).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Output format (wide adds each finding's explanation).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// Exit 1 when any finding of these kinds exists (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub fail_on: Vec<crate::report::findings::Kind>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Parses a duration as kubectl's flags take one (Go's `time.ParseDuration`:
/// a sequence of numbers with units ns, us, µs, ms, s, m, h, such as `1m30s`
/// or `1.5h`); a bare number is seconds, as kubectl's `--request-timeout`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!(
            "`{s}`: {why}; expected a duration such as 90s, 2m, 1h, 1m30s or 500ms, or a number of seconds"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map(Duration::from_secs).map_err(|_| bad("too long"));
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.starts_with('-') {
        return Err(bad("a duration cannot be negative"));
    }
    let is_num = |c: char| c.is_ascii_digit() || c == '.';
    let mut nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let unit_at = rest
            .find(|c| !is_num(c))
            .ok_or_else(|| bad("a unit is missing after the last number"))?;
        let (num, tail) = rest.split_at(unit_at);
        let (unit, next) = tail.split_at(tail.find(is_num).unwrap_or(tail.len()));
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad(&format!("unknown unit `{unit}`"))),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || frac.len() > 18 {
            return Err(bad(&format!("`{num}` is not a number")));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("too long"))?
        };
        let frac_nanos = if frac.is_empty() {
            0
        } else {
            let f: u128 = frac.parse().map_err(|_| bad("too long"))?;
            f * scale / 10u128.pow(frac.len() as u32)
        };
        nanos = whole
            .checked_mul(scale)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(|| bad("too long"))?;
        rest = next;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("too long"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error;

    fn habit(args: &[&str], piped: bool) -> Result<Option<String>, Failure> {
        let argv: Vec<String> = ["kubectl-ns", "exec", "--agent", "unix:///x", "node"]
            .iter()
            .chain(args)
            .chain(&["--", "sh", "-i"])
            .map(|s| s.to_string())
            .collect();
        let Command::Exec(a) = Cli::try_parse_from(&argv).unwrap().command else {
            unreachable!()
        };
        a.ipc_habit(&argv, piped)
    }

    #[test]
    fn dash_i_from_kubectl_habits_is_caught() {
        for it in [&["-it"][..], &["-ti"], &["-i", "-t"], &["-t", "-i"]] {
            let e = habit(it, false).unwrap_err();
            assert_eq!(e.code(), error::USAGE);
            assert!(e.to_string().contains("-i is the IPC namespace"), "{}", e);
            assert!(e.to_string().contains("--ipc -t"), "{}", e);
        }
        assert!(
            habit(&["-n", "-it"], false)
                .unwrap()
                .unwrap()
                .contains("-t already passes stdin")
        );
        assert!(
            habit(&["-n", "-i"], true)
                .unwrap()
                .unwrap()
                .contains("add --stdin")
        );
        assert!(habit(&["-i"], true).unwrap().unwrap().contains("add --stdin"));
        // Meant as written: no word.
        for quiet in [
            &["--ipc", "-t"][..],
            &["-i"],
            &["-n", "-i"],
            &["-i", "--stdin"],
            &["-n", "-t"],
        ] {
            assert_eq!(habit(quiet, false).unwrap(), None, "{quiet:?}");
        }
        assert_eq!(habit(&["--ipc"], true).unwrap(), None);
        assert_eq!(habit(&["-t", "-i", "--stdin"], true).unwrap(), None);
    }

    #[test]
    fn durations_parse_as_kubectl_takes_them() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("90"), Duration::from_secs(90));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3s"), Duration::from_secs(3723));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (input, why) in [
            ("", "empty"),
            ("60x", "unknown unit `x`"),
            ("1m30", "a unit is missing"),
            ("abc", "unknown unit `abc`"),
            ("-5s", "cannot be negative"),
            ("5 s", "unknown unit ` s`"),
            ("1..5s", "`1..5` is not a number"),
            (".s", "`.` is not a number"),
            ("1.5", "a unit is missing"),
            ("99999999999999999999h", "too long"),
            ("99999999999999999999", "too long"),
        ] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.contains(why), "{input:?}: {e}");
            assert!(e.contains("expected a duration such as 90s"), "{e}");
        }
    }
}
