//! Generated gRPC types: the kubectl-ns agent API (`kns.agent.v1`) and the
//! subset of the CRI `runtime.v1` RuntimeService that kubectl-ns uses.
#![forbid(unsafe_code)]

/// The response header in which the agent names its version, so the plugin
/// can warn on a mismatch without an extra call.
pub const AGENT_VERSION_HEADER: &str = "kns-agent-version";

/// The trailer of a `PERMISSION_DENIED` the agent's authorizer gave: JSON
/// naming the user and the missing rule (a SubjectAccessReview's
/// `resourceAttributes` plus `user`), from which the plugin words the
/// `kubectl create rolebinding` that would grant it.
pub const DENIED_RULE_HEADER: &str = "kns-denied-rule";

/// Trailer marking a refusal by the node operator's policy (not by the
/// caller's rights); its value is the policy rule's name.
pub const POLICY_HEADER: &str = "kns-policy";

/// Trailer marking an `UNAUTHENTICATED` for a bearer token the API server's
/// TokenReview rejected (most often expired), apart from a missing token
/// or a certificate the agent cannot check: the plugin then says how to
/// get a new token.
pub const TOKEN_REJECTED_HEADER: &str = "kns-token-rejected";

/// The largest message a client may send to the agent, in bytes: an exec
/// start, or one chunk of stdin. Bounds what one message can make the agent
/// hold; the agent refuses larger ones (`OUT_OF_RANGE`).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Where the agent image is published; its tag is the version, and the
/// toolbox variant's (`scripts/image --toolbox`) the version with
/// `-toolbox`.
pub const AGENT_IMAGE_REPOSITORY: &str = "ghcr.io/kubectl-ns/kubectl-ns-agent";

/// A gRPC endpoint on the unix socket at `path`, dialled by tonic's own
/// unix-socket connector: the one connector for the CRI runtime, the agent's
/// readiness probe, `kubectl-ns --agent unix://…` and the tests.
pub fn unix_endpoint(path: impl AsRef<std::path::Path>) -> tonic::transport::Endpoint {
    let addr = format!("unix://{}", path.as_ref().display());
    // tonic only fails on bytes that are not UTF-8 or a missing scheme, and a
    // formatted `unix://` String has neither.
    tonic::transport::Endpoint::from_shared(addr).expect("a unix:// address always parses")
}

/// The agent's API, spoken between `kubectl-ns` and `kubectl-ns-agent`.
pub mod agent {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("kns.agent.v1");
}

/// The CRI `runtime.v1` subset (see `cri/runtime/v1/api.proto` for the
/// upstream version it follows).
pub mod cri {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("runtime.v1");
}

impl agent::ProcessInfo {
    /// The process's namespace of kind `k`; `None` where the kernel has no
    /// such kind.
    pub fn namespace(&self, k: agent::Namespace) -> Option<&agent::NamespaceId> {
        self.namespaces.iter().find(|n| n.kind == k as i32)
    }
}

impl agent::Namespace {
    /// Every kind, in the order nsenter(1) lists them: the order `ls` prints
    /// and `-a` asks for.
    pub const ALL: [agent::Namespace; 8] = [
        agent::Namespace::Mnt,
        agent::Namespace::Uts,
        agent::Namespace::Ipc,
        agent::Namespace::Net,
        agent::Namespace::Pid,
        agent::Namespace::User,
        agent::Namespace::Cgroup,
        agent::Namespace::Time,
    ];

    /// The kind's file name under /proc/PID/ns, which is also the name users
    /// see; `?` for the unspecified value.
    pub fn proc_name(self) -> &'static str {
        match self {
            agent::Namespace::Mnt => "mnt",
            agent::Namespace::Uts => "uts",
            agent::Namespace::Ipc => "ipc",
            agent::Namespace::Net => "net",
            agent::Namespace::Pid => "pid",
            agent::Namespace::User => "user",
            agent::Namespace::Cgroup => "cgroup",
            agent::Namespace::Time => "time",
            agent::Namespace::Unspecified => "?",
        }
    }
}
