//! The route to an agent ([`Route`], decided once from the arguments): a
//! client from the kubeconfig (or in-cluster),
//! the target resolved to a node and container, and a gRPC channel to that
//! node's agent, `--agent` directly or through the API server's
//! port-forward (with the user's credentials and the agent cache).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::{VersionRequest, VersionResponse};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Config};
use tower::util::MapRequestLayer;

use crate::agent::cache::AgentCache;
use crate::agent::transport;
use crate::agent::transport::AgentChannel;
use crate::cli::KubeArgs;
use crate::cli::target::{DirectTarget, Target};
use crate::error::{Failure, ResolveError, UsageError};
use crate::kube::manifests;
use crate::kube::resolve::{self, KubeTarget, Placed, PodContainers, choose_agent};
use crate::kube::resolver::Resolver;
use crate::timings;

/// How a command reaches a node's agent, decided once from the arguments.
#[derive(Debug, Clone)]
pub enum Route {
    /// `--agent ADDR` (or `KNS_AGENT`): that one agent, whatever the node.
    Direct(String),
    /// The node's agent pod, through the API server's port-forward to its
    /// `port`, with the kubeconfig user's credentials; the pod is
    /// remembered in the agent cache.
    Forward { port: u16 },
}

impl Route {
    pub fn of(args: &KubeArgs) -> Route {
        match &args.agent {
            Some(addr) => Route::Direct(addr.clone()),
            None => Route::Forward {
                port: args.agent_port,
            },
        }
    }

    /// The agent's address, for a route straight to it.
    pub fn direct(&self) -> Option<&str> {
        match self {
            Route::Direct(addr) => Some(addr),
            Route::Forward { .. } => None,
        }
    }

    /// The channel to the agent on `node`: the direct one, else the
    /// port-forward to that node's agent pod, remembered in the cache from
    /// an earlier lookup or looked up now.
    pub async fn channel(&self, r: &Resolver, node: &str) -> Result<AgentChannel, Failure> {
        let port = match self {
            Route::Direct(addr) => return Ok(transport::connect(addr).await?),
            Route::Forward { port } => *port,
        };
        let auth = credentials(r).agent_auth().await?;
        let cache = agent_cache(r);
        if let Some((cache, pod)) = cache.as_ref().and_then(|c| Some((c, c.get(node)?))) {
            timings::mark("lookup");
            match forward(r, port, pod, auth.clone()).await {
                Ok(channel) => return Ok(channel),
                // Gone or not serving: look again, as if nothing were cached.
                Err(e) if e.agent_gone() => cache.forget(node),
                Err(e) => return Err(e.into()),
            }
        }
        let pod = r.agent_on(node).await?;
        timings::mark("lookup");
        let channel = forward(r, port, pod.clone(), auth).await?;
        if let Some(cache) = &cache {
            cache.put(node, &pod);
        }
        Ok(channel)
    }

    /// Pod `name`, as `check` takes it (which names its node), and the
    /// channel to its node's agent.
    ///
    /// When the cache remembers the pod's node and that node's agent, the
    /// port-forward to that agent opens while the pod GET is in flight,
    /// saving a round trip. It is only a guess, used only when the pod
    /// answers from that node; a pod now elsewhere (deleted and recreated,
    /// as a StatefulSet's are) takes the path of an uncached one, and the
    /// early port-forward is dropped unused. The agent then checks the
    /// container ID against its own runtime in either case.
    pub async fn to_pod<T: Placed>(
        &self,
        r: &Resolver,
        namespace: Option<&str>,
        name: &str,
        check: impl FnOnce(&Pod) -> Result<T, Failure>,
    ) -> Result<(T, AgentChannel), Failure> {
        let key = format!("{}/{name}", namespace.unwrap_or(&r.namespace));
        let cache = agent_cache(r);
        let guess = match self {
            Route::Forward { port } => cache.as_ref().and_then(|c| c.guess(&key)).map(|g| (g, *port)),
            Route::Direct(_) => None,
        };
        let Some(((node, agent), port)) = guess else {
            let placed = check(&r.pod(namespace, name).await?)?;
            let channel = self.channel(r, placed.node()).await?;
            if let Some(cache) = cache.as_ref().filter(|_| self.direct().is_none()) {
                cache.place(&key, placed.node());
            }
            return Ok((placed, channel));
        };
        let auth = credentials(r).agent_auth().await?;
        let early = forward(r, port, agent, auth);
        let pod = r.pod(namespace, name);
        tokio::pin!(early, pod);
        let mut opened = None;
        let pod = loop {
            tokio::select! {
                pod = &mut pod => break pod,
                channel = &mut early, if opened.is_none() => opened = Some(channel),
            }
        };
        timings::mark("lookup");
        let placed = check(&pod?)?;
        if placed.node() == node {
            let channel = match opened {
                Some(channel) => channel,
                None => early.await,
            };
            match channel {
                Ok(channel) => return Ok((placed, channel)),
                Err(e) if e.agent_gone() => {
                    if let Some(cache) = &cache {
                        cache.forget(&node);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let channel = self.channel(r, placed.node()).await?;
        if let Some(cache) = &cache {
            cache.place(&key, placed.node());
        }
        Ok((placed, channel))
    }

    /// The way to many nodes' agents at once, prepared once for all of
    /// them: the agent pods listed in one request, the user's identity
    /// asked once (an exec credential plugin may be slow).
    pub async fn many(&self, r: &Resolver) -> Result<Many, Failure> {
        Ok(match self {
            Route::Direct(addr) => Many::Direct(addr.clone()),
            Route::Forward { port } => Many::Forward(Box::new(Forwards {
                r: r.clone(),
                agents: agents(r).await?,
                auth: credentials(r).agent_auth().await?,
                port: *port,
            })),
        })
    }
}

/// A [`Route`] to many nodes' agents, from [`Route::many`].
pub enum Many {
    Direct(String),
    Forward(Box<Forwards>),
}

/// What port-forwards to many nodes' agents share.
pub struct Forwards {
    r: Resolver,
    agents: BTreeMap<String, Vec<Pod>>,
    auth: transport::AgentAuth,
    port: u16,
}

impl Many {
    /// The nodes with an agent pod; none for a direct route, whose one
    /// agent answers for whichever node is asked.
    pub fn nodes(&self) -> std::collections::BTreeSet<String> {
        match self {
            Many::Direct(_) => Default::default(),
            Many::Forward(f) => f.agents.keys().cloned().collect(),
        }
    }

    /// A channel to `node`'s agent, or why there is none, on one line.
    pub async fn channel(&self, node: &str) -> Result<AgentChannel, String> {
        match self {
            Many::Direct(addr) => transport::connect(addr)
                .await
                .map_err(|e| Failure::from(e).compact()),
            Many::Forward(f) => {
                let summary = |f: Failure| f.summary();
                let pods = f.agents.get(node).map(Vec::as_slice).unwrap_or_default();
                let pod = choose_agent(pods, node, &f.r.agent_namespace).map_err(summary)?;
                transport::portforward(
                    f.r.client.clone(),
                    &f.r.agent_namespace,
                    &pod,
                    f.port,
                    f.auth.clone(),
                )
                .await
                .map_err(|e| summary(e.into()))
            }
        }
    }
}

/// The agent cache of the resolver's cluster and agent namespace.
fn agent_cache(r: &Resolver) -> Option<AgentCache> {
    AgentCache::for_cluster(r.config.cluster_url.to_string().as_str(), &r.agent_namespace)
}

/// The port-forward to agent pod `pod`, its end marked for `KNS_TIMINGS`.
async fn forward(
    r: &Resolver,
    port: u16,
    pod: String,
    auth: transport::AgentAuth,
) -> Result<AgentChannel, crate::error::TransportError> {
    let channel = transport::portforward(r.client.clone(), &r.agent_namespace, &pod, port, auth).await;
    timings::mark("portforward");
    channel
}

/// Who the user is, for the agents: the kubeconfig's user.
fn credentials(r: &Resolver) -> transport::Credentials {
    transport::Credentials::new(r.config.clone())
}

/// The ready agent pod of every node, or why a node has none: one list of
/// the agent pods for all nodes.
pub async fn agents(r: &Resolver) -> Result<BTreeMap<String, Vec<Pod>>, Failure> {
    let pods = crate::kube::agents::list(&r.client, &r.agent_namespace, None)
        .await
        .map_err(|e| {
            crate::error::api_failure(
                &format!("cannot list kubectl-ns agents in namespace {}", r.agent_namespace),
                e,
            )
        })?;
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            by_node.entry(node).or_default().push(p);
        }
    }
    Ok(by_node)
}

/// A client for the context the user chose.
pub async fn resolver(args: &KubeArgs) -> Result<Resolver, Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| ResolveError::Config {
        what: what.to_owned(),
        reason: e.to_string(),
        direct: args.agent.is_some(),
    };
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| fail(&format!("cannot read kubeconfig {}", path.display()), &e))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| fail("cannot use the kubeconfig", &e))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail("cannot use the kubeconfig", &e))?,
        (None, None) => Config::infer().await.map_err(|e| match no_kubeconfig() {
            Some(path) => fail(
                "no cluster configuration found",
                &format!(
                    "there is no kubeconfig at {} ($KUBECONFIG is not set) and this is not a pod \
                     ($KUBERNETES_SERVICE_HOST is not set)",
                    path.display()
                ),
            ),
            None => fail("no cluster configuration found", &e),
        })?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    crate::error::set_api_server(config.cluster_url.to_string());
    let kept = std::sync::Arc::new(config.clone());
    // Every request, the port-forward upgrade included, passes this layer:
    // the round trips `KNS_TIMINGS=1` reports.
    let count = MapRequestLayer::new(|req: http::Request<kube::client::Body>| {
        timings::api_call();
        req
    });
    let client = ClientBuilder::try_from(config)
        .map_err(|e| fail("cannot build a Kubernetes client", &e))?
        .with_layer(&count)
        .build();
    timings::mark("config");
    Ok(Resolver {
        client,
        namespace,
        agent_namespace: args.agent_namespace.clone(),
        config: kept,
    })
}

/// What a session talks to: the agent's channel and the agent-side target.
#[derive(Debug)]
pub struct Reached {
    pub channel: AgentChannel,
    pub target: kns_proto::agent::Target,
    /// How to name the target to the user.
    pub label: String,
}

fn direct_needs_agent(d: &DirectTarget) -> UsageError {
    UsageError::DirectWithoutAgent {
        target: d.to_string(),
    }
}

/// Refuses --namespace with a target it cannot apply to: ignored, it would
/// let the user believe the target was checked against it.
pub fn namespace_applies(args: &KubeArgs, target: &Target) -> Result<(), Failure> {
    match (&args.namespace, target) {
        (Some(ns), Target::Direct(d)) => Err(UsageError::NamespaceOfNoPod {
            namespace: ns.clone(),
            target: d.to_string(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Resolves the target and reaches its agent.
pub async fn reach(args: &KubeArgs, target: &Target, container: Option<&str>) -> Result<Reached, Failure> {
    let route = Route::of(args);
    match target {
        Target::Direct(d) => {
            let addr = route.direct().ok_or_else(|| direct_needs_agent(d))?;
            Ok(Reached {
                channel: transport::connect(addr).await?,
                target: d.to_proto(),
                label: d.to_string(),
            })
        }
        Target::Kube(KubeTarget::Node(node)) => {
            let r = resolver(args).await?;
            // The node's name is all the agent lookup needs: both at once.
            // The node's own error comes first, being the more precise.
            let (exists, channel) = tokio::join!(r.node(node), route.channel(&r, node));
            exists?;
            Ok(Reached {
                channel: channel?,
                target: DirectTarget::Node.to_proto(),
                label: format!("node/{node}"),
            })
        }
        Target::Kube(KubeTarget::Pod { namespace, name }) => {
            let r = resolver(args).await?;
            let (c, channel) = route
                .to_pod(&r, namespace.as_deref(), name, |pod| {
                    Ok(resolve::choose_container(pod, container)?)
                })
                .await?;
            Ok(Reached {
                channel,
                target: DirectTarget::Container(c.container_id.clone()).to_proto(),
                label: format!("{}/{} ({})", c.namespace, c.pod, c.container),
            })
        }
    }
}

/// A pod's running containers and its node's agent, for `ls`.
pub async fn reach_pod(
    args: &KubeArgs,
    namespace: Option<&str>,
    name: &str,
) -> Result<(AgentChannel, PodContainers), Failure> {
    let r = resolver(args).await?;
    let (containers, channel) = Route::of(args)
        .to_pod(&r, namespace, name, |pod| Ok(resolve::pod_containers(pod)?))
        .await?;
    Ok((channel, containers))
}

/// What the agent at `addr` (`--agent`) reports about itself.
pub async fn direct_version(addr: &str) -> Result<VersionResponse, Failure> {
    let mut client = AgentClient::new(transport::connect(addr).await?);
    timings::grpc_call();
    let v = crate::agent::deadline::answered(async {
        client
            .version(VersionRequest {})
            .await
            .map_err(|s| crate::error::status_failure(&s))
    })
    .await?;
    Ok(v.into_inner())
}

/// Refuses `--agent` (or `KNS_AGENT`) for a command that only works
/// through the Kubernetes API: ignored, it would let the user believe that
/// agent was the one acted on.
pub fn no_direct_agent(args: &KubeArgs, command: &'static str) -> Result<(), Failure> {
    match Route::of(args).direct() {
        Some(addr) => Err(UsageError::AgentOfNoUse {
            command,
            addr: addr.to_owned(),
        }
        .into()),
        None => Ok(()),
    }
}

/// Refuses `--namespace` for `command`, which is about the agents: it
/// names the namespace of pods to enter and would change nothing, where
/// the user most likely meant --agent-namespace.
pub fn no_pod_namespace(args: &KubeArgs, command: &'static str) -> Result<(), Failure> {
    match &args.namespace {
        Some(namespace) => Err(UsageError::NamespaceForAgents {
            command,
            namespace: namespace.clone(),
        }
        .into()),
        None => Ok(()),
    }
}

/// How long one agent may take to answer a version query.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the agent in pod `pod` reports about itself (its Version RPC,
/// which needs no identity, through the port-forward): the image tag may be
/// a digest, or lie.
async fn reported_version(r: Resolver, port: u16, pod: String) -> Result<VersionResponse, String> {
    let ask = async {
        let channel = transport::portforward(
            r.client.clone(),
            &r.agent_namespace,
            &pod,
            port,
            Default::default(),
        )
        .await?;
        AgentClient::new(channel)
            .version(VersionRequest {})
            .await
            .map(|v| v.into_inner())
            .map_err(|s| crate::error::status_failure(&s))
    };
    match tokio::time::timeout(VERSION_TIMEOUT, ask).await {
        Ok(r) => r.map_err(|f| f.summary()),
        Err(_) => Err(format!("no answer within {}s", VERSION_TIMEOUT.as_secs())),
    }
}

/// What the agents in `pods` report, asked concurrently: pod name → their
/// Version answer, or why it could not be asked.
pub async fn agent_versions(
    r: &Resolver,
    port: u16,
    pods: impl IntoIterator<Item = String>,
) -> BTreeMap<String, Result<VersionResponse, String>> {
    let mut set = tokio::task::JoinSet::new();
    for pod in pods {
        let r = r.clone();
        set.spawn(async move { (pod.clone(), reported_version(r, port, pod).await) });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((pod, v)) = joined {
            out.insert(pod, v);
        }
    }
    out
}

/// The installed agent DaemonSet, if any.
pub async fn agent_daemonset(r: &Resolver) -> Result<Option<DaemonSet>, Failure> {
    Api::<DaemonSet>::namespaced(r.client.clone(), &r.agent_namespace)
        .get_opt(manifests::DAEMONSET_NAME)
        .await
        .map_err(|e| {
            crate::error::api_failure(
                &format!(
                    "cannot read the agent DaemonSet in namespace {}",
                    r.agent_namespace
                ),
                e,
            )
        })
}

/// Where kubectl would have looked for a kubeconfig and found none, when
/// nothing else was to be tried either (no `$KUBECONFIG`, not in a pod):
/// the client library's own error then quotes paths oddly and names an
/// in-cluster attempt the user never meant.
fn no_kubeconfig() -> Option<std::path::PathBuf> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    if set("KUBECONFIG") || set("KUBERNETES_SERVICE_HOST") {
        return None;
    }
    let path = std::path::PathBuf::from(std::env::var_os("HOME")?).join(".kube/config");
    (!path.exists()).then_some(path)
}
