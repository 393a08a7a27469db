//! Command-line definitions: parsed here, validated into typed requests by
//! each command before anything is sent.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::target::Target;

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
    /// Examples:
    ///   kubectl ns exec web-1 -n -- ss -lntp
    ///   kubectl ns exec prod/web-1 -c app -p -- ps -ef
    ///   kubectl ns exec node/worker-3 -a -t -- bash
    ///   kubectl ns exec --agent unix:///run/kns.sock pid/1234 -n -- ip addr
    #[command(verbatim_doc_comment)]
    Exec(ExecArgs),
    /// Show a target's namespace identities next to the node's: compare
    /// first, enter second.
    ///
    /// Examples:
    ///   kubectl ns ls web-1
    ///   kubectl ns ls prod/web-1 -o wide
    #[command(verbatim_doc_comment)]
    Ls(LsArgs),
    /// Install the agent DaemonSet (embedded manifests, server-side apply)
    /// and wait for it on every node.
    ///
    /// Example:
    ///   kubectl ns install --image registry.example/kubectl-ns-agent:0.1.0
    #[command(verbatim_doc_comment)]
    Install(InstallArgs),
    /// Remove everything `install` created.
    Uninstall(UninstallArgs),
    /// Show which nodes run an agent, its version and readiness.
    Status(StatusArgs),
    /// Print the plugin's version and the agents' (from the cluster, or
    /// the one --agent names).
    Version(VersionArgs),
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
    /// How long to wait for the rollout, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// How to reach the cluster and the agent.
#[derive(Debug, Args, Clone, Default)]
pub struct KubeArgs {
    /// The Kubernetes namespace of the pod (-n is the network namespace
    /// here, as in nsenter). Default: the kubeconfig context's.
    #[arg(long = "namespace", value_name = "NS", help_heading = "Kubernetes")]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "CONTEXT", help_heading = "Kubernetes")]
    pub context: Option<String>,
    /// The kubeconfig file to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE", help_heading = "Kubernetes")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The namespace the agent DaemonSet runs in.
    #[arg(long, env = "KNS_AGENT_NAMESPACE", value_name = "NS", default_value = crate::resolve::AGENT_NAMESPACE, help_heading = "Kubernetes")]
    pub agent_namespace: String,
    /// The port the agent listens on inside its pod (on 127.0.0.1).
    #[arg(
        long,
        env = "KNS_AGENT_PORT",
        value_name = "PORT",
        default_value_t = 7469,
        help_heading = "Kubernetes"
    )]
    pub agent_port: u16,
    /// Reach the agent at ADDR (unix:///PATH or http://HOST:PORT) instead of
    /// through the API server's port-forward; needed for pid/, container/
    /// and node targets.
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
    /// pid/PID, container/ID, node.
    pub target: Target,
    /// The pod's container (default: the kubectl.kubernetes.io/default-container
    /// annotation, else the only one). Init and ephemeral containers too.
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
    /// The command and its arguments, after --.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    /// The table with namespace inode numbers.
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// What to inspect: POD (every running container), pod/POD, NS/POD,
    /// node/NODE; with --agent also pid/PID, container/ID, node.
    pub target: Target,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}
