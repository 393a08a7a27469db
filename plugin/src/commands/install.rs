//! `kubectl ns install` and `uninstall`: the embedded manifests, applied
//! with server-side apply, and the rollout awaited.

use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::{InstallArgs, UninstallArgs};
use crate::cluster;
use crate::exit::Failure;
use crate::manifests::{self, Object};
use crate::resolve::api_failure;

/// The field manager kubectl-ns applies as.
pub const FIELD_MANAGER: &str = "kubectl-ns";

async fn apply<K>(api: Api<K>, obj: &K) -> Result<(), Failure>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        api_failure(
            &format!("cannot apply {} {name}", K::kind(&Default::default())),
            e,
        )
    })
}

fn namespaced<K>(client: &kube::Client, obj: &K) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(
        client.clone(),
        obj.meta().namespace.as_deref().unwrap_or("default"),
    )
}

/// Waits until every scheduled agent runs the new template and is ready.
async fn wait_rollout(api: &Api<DaemonSet>, name: &str, timeout: Duration) -> Result<(), Failure> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let ds = api
            .get(name)
            .await
            .map_err(|e| api_failure("cannot read the agent DaemonSet", e))?;
        let generation = ds.metadata.generation.unwrap_or(0);
        if let Some(st) = &ds.status {
            let desired = st.desired_number_scheduled;
            let updated = st.updated_number_scheduled.unwrap_or(0);
            let ready = st.number_ready;
            let line = format!("rollout: {ready}/{desired} agents ready, {updated} updated");
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            if st.observed_generation.unwrap_or(0) >= generation && updated >= desired && ready >= desired {
                return Ok(());
            }
        }
        if start.elapsed() >= timeout {
            return Err(Failure::own(format!(
                "the agents did not become ready within {}s ({last}).\nHint: `kubectl ns status` shows which \
                 nodes lack a ready agent; `kubectl -n {} describe daemonset {name}` shows why",
                timeout.as_secs(),
                api.resource_url()
                    .split('/')
                    .nth(4)
                    .unwrap_or("kubectl-ns-system"),
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn install(args: InstallArgs) -> Result<u8, Failure> {
    let r = cluster::resolver(&args.kube).await?;
    let image = args.image.clone().unwrap_or_else(manifests::default_image);
    let objects = manifests::objects(&args.kube.agent_namespace, &image)?;
    let c = &r.client;
    let mut daemonset = None;
    for o in &objects {
        match o {
            Object::Namespace(n) => apply(Api::<Namespace>::all(c.clone()), n).await?,
            Object::ServiceAccount(s) => apply(namespaced::<ServiceAccount>(c, s), s).await?,
            Object::ClusterRole(cr) => apply(Api::<ClusterRole>::all(c.clone()), cr).await?,
            Object::Role(role) => apply(namespaced::<Role>(c, role), role).await?,
            Object::DaemonSet(d) => {
                apply(namespaced::<DaemonSet>(c, d), d).await?;
                daemonset = d.metadata.name.clone();
            }
        }
        eprintln!("applied {}", o.describe());
    }
    if let Some(name) = daemonset
        && !args.no_wait
    {
        let api = Api::<DaemonSet>::namespaced(c.clone(), &args.kube.agent_namespace);
        wait_rollout(&api, &name, args.timeout).await?;
    }
    println!(
        "kubectl-ns agent {image} installed in namespace {}",
        args.kube.agent_namespace
    );
    Ok(0)
}

async fn delete<K>(api: Api<K>, name: &str) -> Result<bool, Failure>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(api_failure(
            &format!("cannot delete {} {name}", K::kind(&Default::default())),
            e,
        )),
    }
}

pub async fn uninstall(args: UninstallArgs) -> Result<u8, Failure> {
    let r = cluster::resolver(&args.kube).await?;
    let objects = manifests::objects(&args.kube.agent_namespace, &manifests::default_image())?;
    let c = &r.client;
    let ns = &args.kube.agent_namespace;
    // Reverse order: the agents go first, the namespace last.
    for o in objects.iter().rev() {
        let name = o.describe();
        let short = name.split_once('/').map(|(_, n)| n).unwrap_or("");
        let gone = match o {
            Object::DaemonSet(_) => delete(Api::<DaemonSet>::namespaced(c.clone(), ns), short).await?,
            Object::Role(_) => delete(Api::<Role>::namespaced(c.clone(), ns), short).await?,
            Object::ClusterRole(_) => delete(Api::<ClusterRole>::all(c.clone()), short).await?,
            Object::ServiceAccount(_) => {
                delete(Api::<ServiceAccount>::namespaced(c.clone(), ns), short).await?
            }
            Object::Namespace(_) => delete(Api::<Namespace>::all(c.clone()), short).await?,
        };
        eprintln!("{} {name}", if gone { "deleted" } else { "absent:" });
    }
    println!("kubectl-ns agent removed from namespace {ns}");
    Ok(0)
}
