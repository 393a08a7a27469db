//! The agent's gRPC service: its state, and the small RPCs (Inspect, List,
//! Version). Exec is in `rpc::exec`, Replay in `rpc::replay`, the checks
//! every request passes in `rpc::admit` and `rpc::validate`; errors become
//! `tonic::Status` in [`crate::status`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use kns_proto::agent::agent_server::Agent;
use kns_proto::agent::{
    ExecRequest, InspectRequest, InspectResponse, ListRequest, ListResponse, ReplayRequest, VersionRequest,
    VersionResponse,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::access::audit::Audit;
use crate::access::authz::{Access, Action};
use crate::access::identity::Caller;
use crate::access::policy::Policies;
use crate::enter::cgroup::Containment;
use crate::enter::request::Node;
use crate::kernel::procfs::{self, ProcError};
use crate::metrics::Metrics;
use crate::record::Store;
use crate::rpc::validate;
use crate::session::registry::Registry;
use crate::session::replies::Replies;
use crate::status::AgentError;
use crate::sys::spawner::Spawner;
use crate::target::resolve::{self, Resolver, Target};

/// What the agent allows a session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// End sessions after this long.
    pub max_age: Option<std::time::Duration>,
    /// Sessions at once.
    pub max_sessions: u32,
}

/// Who may use the agent, what the node's operator allows, and where what
/// they did is recorded and counted.
#[derive(Debug)]
pub struct Guard {
    pub access: Access,
    pub audit: Audit,
    pub policy: Arc<Policies>,
    /// Where the sessions the policy records are kept.
    pub recordings: Store,
    pub metrics: Metrics,
}

/// The agent service.
#[derive(Debug, Clone)]
pub struct AgentService {
    pub(super) resolver: Arc<Resolver>,
    pub(super) node: Node,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) sessions: Arc<AtomicU64>,
    pub(super) spawner: Arc<Spawner>,
    /// Where sessions' cgroups are made, and what could not be had.
    pub(super) containment: Arc<Containment>,
    pub(super) limits: Limits,
    /// One permit per running session.
    pub(super) running: Arc<tokio::sync::Semaphore>,
    /// The sessions running now, as many at most as there are permits.
    pub(super) registry: Arc<Registry>,
    pub(super) access: Arc<Access>,
    pub(super) audit: Arc<Audit>,
    pub(super) policy: Arc<Policies>,
    pub(super) recordings: Arc<Store>,
    pub(super) metrics: Metrics,
}

impl AgentService {
    pub fn new(
        resolver: Arc<Resolver>,
        node: Node,
        shutdown: watch::Receiver<bool>,
        spawner: Spawner,
        containment: Containment,
        limits: Limits,
        guard: Guard,
    ) -> Self {
        AgentService {
            resolver,
            node,
            shutdown,
            sessions: Arc::new(AtomicU64::new(0)),
            spawner: Arc::new(spawner),
            containment: Arc::new(containment),
            running: Arc::new(tokio::sync::Semaphore::new(limits.max_sessions as usize)),
            registry: Registry::new(limits.max_sessions),
            limits,
            access: Arc::new(guard.access),
            audit: Arc::new(guard.audit),
            policy: guard.policy,
            recordings: Arc::new(guard.recordings),
            metrics: guard.metrics,
        }
    }

    /// The node's name in its recordings' file names.
    pub(super) fn recording_node(&self) -> &str {
        self.access.node_name().unwrap_or("node")
    }
}

/// Names the agent's version to the client, which warns on a mismatch.
pub(super) fn versioned<T>(body: T) -> Response<T> {
    let mut r = Response::new(body);
    r.metadata_mut().insert(
        kns_proto::AGENT_VERSION_HEADER,
        tonic::metadata::MetadataValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    r
}

#[tonic::async_trait]
impl Agent for AgentService {
    type ExecStream = Replies;

    async fn exec(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Ok(self.exec_session(request).await?)
    }

    type ReplayStream = crate::rpc::replay::Chunks;

    async fn replay(&self, request: Request<ReplayRequest>) -> Result<Response<Self::ReplayStream>, Status> {
        Ok(self.replay_recording(request).await?)
    }

    async fn inspect(&self, request: Request<InspectRequest>) -> Result<Response<InspectResponse>, Status> {
        let caller = Caller::of(&request);
        let target = validate::target_of(request.into_inner().target)?;
        let resolved = self
            .admit(&caller, Action::Inspect, &target, None)
            .await?
            .resolved;
        // Read by PID, so held first and checked after: what was read is
        // the target's only if it still runs.
        let pinned = resolve::pin(&resolved).map_err(AgentError::from)?;
        let pid = resolved.pid;
        let read = |f: fn(i32) -> Result<String, ProcError>| f(pid).map_err(AgentError::from);
        let answer = InspectResponse {
            target: Some(procfs::process_info(pid).map_err(AgentError::from)?),
            node: Some((*self.node.info).clone()),
            uid_map: read(procfs::uid_map)?,
            gid_map: read(procfs::gid_map)?,
            cgroup: read(procfs::cgroup)?,
            timens_offsets: read(procfs::timens_offsets)?,
            container_id: resolved.container_id.unwrap_or_default(),
        };
        procfs::still_runs(pid, &pinned.pidfd).map_err(AgentError::from)?;
        Ok(versioned(answer))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let caller = Caller::of(&request);
        self.admit(&caller, Action::List, &Target::Node, None).await?;
        let namespaces = request.into_inner().namespaces;
        Ok(versioned(
            crate::rpc::inventory::list(&self.resolver, &self.node.info, namespaces).await?,
        ))
    }

    async fn version(&self, _: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        let runtime = self.resolver.cri().await.map(|c| c.runtime).unwrap_or_default();
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime,
            node_pid: self.resolver.node_pid(),
            insecure_skip_authz: self.access.skips_authz(),
            node_name: self.access.node_name().unwrap_or_default().to_owned(),
            policy_error: self.policy.error().unwrap_or_default(),
            sessions_contained: self.containment.sessions.is_some(),
            containment_error: self.containment.error.clone().unwrap_or_default(),
            cgroup_layout: self.containment.layout.map(|l| l.to_string()).unwrap_or_default(),
            sessions_memory: self.containment.memory.clone().ok().flatten().unwrap_or(0),
            sessions_memory_error: self.containment.memory.clone().err().unwrap_or_default(),
        }))
    }
}
