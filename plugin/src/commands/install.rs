//! `kubectl ns install` and `uninstall`: the embedded manifests, applied
//! with server-side apply, and the rollout awaited by watching the
//! DaemonSet. kubectl-ns owns only the namespace it created: a namespace
//! that existed before is labelled for Pod Security only when the user says
//! so (`--adopt-namespace`), with a warning, and kept on uninstall.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::agent::route;
use crate::cli::{InstallArgs, UninstallArgs};
use crate::error::{Failure, InstallError, api_failure};
use crate::kube::manifests::{self, Object};
use crate::kube::placement;
use crate::kube::resolve::{AGENT_NAMESPACE, pod_ready};

/// The field manager kubectl-ns applies as.
pub const FIELD_MANAGER: &str = "kubectl-ns";
/// Set on the agent namespace only when kubectl-ns creates it: what
/// uninstall may delete.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kubectl-ns");
/// The Pod Security label the agent's pods (hostPID, capabilities) need.
const POD_SECURITY: (&str, &str) = ("pod-security.kubernetes.io/enforce", "privileged");
const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "kubectl-ns");

/// Words an API error of install/uninstall: a 403 means the user lacks the
/// rights to install, which are not the ones `kubectl ns` users need.
fn install_failure(what: &str, e: kube::Error) -> Failure {
    match &e {
        kube::Error::Api(s) if s.code == 403 => InstallError::Forbidden {
            what: what.to_owned(),
            message: s.message.clone(),
        }
        .into(),
        _ => api_failure(what, e),
    }
}

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
        install_failure(
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

fn has_label(ns: &Namespace, (k, v): (&str, &str)) -> bool {
    ns.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(k))
        .is_some_and(|x| x == v)
}

/// Whether kubectl-ns created this namespace: it carries our managed-by
/// label, or it is the default agent namespace labelled by an older
/// kubectl-ns that did not set one.
fn owned(ns: &Namespace) -> bool {
    has_label(ns, MANAGED_BY)
        || (ns.metadata.name.as_deref() == Some(AGENT_NAMESPACE) && has_label(ns, PART_OF))
}

/// What to apply for the agent namespace, given what exists: the manifest's
/// namespace plus the managed-by label when kubectl-ns creates it or owns
/// it; for someone else's namespace, only the Pod Security label, with a
/// warning, or nothing when it already has it.
fn namespace_to_apply(
    manifest: &Namespace,
    existing: Option<&Namespace>,
) -> (Option<Namespace>, Option<String>) {
    let e = match existing {
        Some(e) if !owned(e) => e,
        _ => {
            let mut ns = manifest.clone();
            ns.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
            return (Some(ns), None);
        }
    };
    if has_label(e, POD_SECURITY) {
        return (None, None);
    }
    let name = e.metadata.name.clone().unwrap_or_default();
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(POD_SECURITY.0.to_owned(), POD_SECURITY.1.to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let warning = format!(
        "warning: namespace {name} existed before and was not created by kubectl-ns: labelling it \
         {}={} (the agent needs hostPID and node capabilities), which lets every pod in it run \
         privileged; `kubectl ns uninstall` will keep the namespace and this label \
         (remove it with `kubectl label namespace {name} {}-`)",
        POD_SECURITY.0, POD_SECURITY.1, POD_SECURITY.0
    );
    (Some(ns), Some(warning))
}

/// The rollout is done when the controller has seen the current template
/// and every scheduled agent runs it and is ready.
fn rolled_out(ds: &DaemonSet) -> bool {
    let generation = ds.metadata.generation.unwrap_or(0);
    ds.status.as_ref().is_some_and(|st| {
        let desired = st.desired_number_scheduled;
        st.observed_generation.unwrap_or(0) >= generation
            && st.updated_number_scheduled.unwrap_or(0) >= desired
            && st.number_ready >= desired
    })
}

fn progress(ds: &DaemonSet) -> String {
    let st = ds.status.clone().unwrap_or_default();
    format!(
        "rollout: {}/{} agents ready, {} updated",
        st.number_ready,
        st.desired_number_scheduled,
        st.updated_number_scheduled.unwrap_or(0)
    )
}

/// Why each agent pod is not ready, one line per pod, for the timeout
/// message: what the user needs, not only the rollout count.
async fn not_ready_agents(client: &kube::Client, ns: &str) -> Vec<String> {
    match crate::kube::agents::list(client, ns, None).await {
        Ok(list) => list
            .iter()
            .filter(|p| !pod_ready(p))
            .map(|p| {
                format!(
                    "{} on node {}: {}",
                    p.metadata.name.as_deref().unwrap_or(""),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .unwrap_or("(unscheduled)"),
                    placement::pod_not_ready_reason(p)
                )
            })
            .collect(),
        Err(e) => vec![format!("(cannot list the agent pods: {e})")],
    }
}

/// What ends one watch request.
enum WatchEnd {
    Done,
    /// The server closed the watch (its timeout): watch again from here.
    Closed(String),
    /// The resource version is too old (410 Gone): start from a fresh GET.
    Expired,
}

/// Waits until every scheduled agent runs the new template and is ready,
/// by watching the DaemonSet from the version read first.
async fn wait_rollout(client: &kube::Client, ns: &str, name: &str, timeout: Duration) -> Result<(), Failure> {
    let ds_api = Api::<DaemonSet>::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    let mut report = |ds: &DaemonSet| {
        let line = progress(ds);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        rolled_out(ds)
    };
    let read_failure = |e| install_failure("cannot read the agent DaemonSet", e);
    let mut version = None;
    let finished = tokio::time::timeout_at(deadline, async {
        loop {
            let rv = match version.take() {
                Some(rv) => rv,
                None => {
                    let ds = ds_api.get(name).await.map_err(read_failure)?;
                    if report(&ds) {
                        return Ok(());
                    }
                    ds.metadata.resource_version.unwrap_or_default()
                }
            };
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            // The API server caps a watch below 295 s.
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(left.clamp(1, 290) as u32);
            let mut events = Box::pin(ds_api.watch(&wp, &rv).await.map_err(read_failure)?);
            let mut rv = rv;
            let end = loop {
                match events.next().await {
                    None => break WatchEnd::Closed(rv),
                    Some(Err(e)) => return Err(read_failure(e)),
                    Some(Ok(WatchEvent::Added(ds) | WatchEvent::Modified(ds))) => {
                        if report(&ds) {
                            break WatchEnd::Done;
                        }
                        rv = ds.metadata.resource_version.unwrap_or(rv);
                    }
                    Some(Ok(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                    Some(Ok(WatchEvent::Deleted(_))) => {
                        return Err(InstallError::DaemonSetDeleted {
                            name: name.to_owned(),
                        }
                        .into());
                    }
                    Some(Ok(WatchEvent::Error(s))) if s.code == 410 => break WatchEnd::Expired,
                    Some(Ok(WatchEvent::Error(s))) => {
                        return Err(InstallError::Watch { message: s.message }.into());
                    }
                }
            };
            match end {
                WatchEnd::Done => return Ok(()),
                WatchEnd::Closed(rv) => version = Some(rv),
                WatchEnd::Expired => version = None,
            }
        }
    })
    .await;
    match finished {
        Ok(r) => r,
        Err(_) => Err(InstallError::NotReady {
            secs: timeout.as_secs(),
            last,
            agents: not_ready_agents(client, ns).await,
            namespace: ns.to_owned(),
            daemonset: name.to_owned(),
        }
        .into()),
    }
}

pub async fn install(args: InstallArgs) -> Result<u8, Failure> {
    route::no_direct_agent(&args.kube, "install")?;
    route::no_pod_namespace(&args.kube, "install")?;
    let r = route::resolver(&args.kube).await?;
    let image = args.image.clone().unwrap_or_else(manifests::default_image);
    let agent_ns = &args.kube.agent_namespace;
    let objects = manifests::objects(agent_ns, &image)?;
    eprintln!("deploying image {image}");
    let c = &r.client;
    let mut daemonset = None;
    for o in &objects {
        match o {
            Object::Namespace(n) => {
                let api = Api::<Namespace>::all(c.clone());
                let existing = api
                    .get_opt(agent_ns)
                    .await
                    .map_err(|e| install_failure(&format!("cannot read namespace {agent_ns}"), e))?;
                if let Some(e) = &existing
                    && !owned(e)
                    && !has_label(e, POD_SECURITY)
                    && !args.adopt_namespace
                {
                    return Err(InstallError::NamespaceTaken {
                        namespace: agent_ns.clone(),
                        label: format!("{}={}", POD_SECURITY.0, POD_SECURITY.1),
                        default: AGENT_NAMESPACE,
                    }
                    .into());
                }
                let (to_apply, warning) = namespace_to_apply(n, existing.as_ref());
                if let Some(w) = warning {
                    eprintln!("{w}");
                }
                match to_apply {
                    Some(ns) => apply(api, &ns).await?,
                    None => {
                        eprintln!("kept Namespace/{agent_ns} (not created by kubectl-ns, already labelled)");
                        continue;
                    }
                }
            }
            Object::ServiceAccount(s) => apply(namespaced::<ServiceAccount>(c, s), s).await?,
            Object::ClusterRole(cr) => apply(Api::<ClusterRole>::all(c.clone()), cr).await?,
            Object::ClusterRoleBinding(b) => apply(Api::<ClusterRoleBinding>::all(c.clone()), b).await?,
            Object::Role(role) => apply(namespaced::<Role>(c, role), role).await?,
            Object::RoleBinding(b) => apply(namespaced::<RoleBinding>(c, b), b).await?,
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
        wait_rollout(c, agent_ns, &name, args.timeout).await?;
    }
    println!("kubectl-ns agent {image} installed in namespace {agent_ns}");
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
        Err(e) => Err(install_failure(
            &format!("cannot delete {} {name}", K::kind(&Default::default())),
            e,
        )),
    }
}

/// Deletes the agent namespace if kubectl-ns created it.
async fn delete_namespace(api: Api<Namespace>, name: &str) -> Result<&'static str, Failure> {
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| install_failure(&format!("cannot read namespace {name}"), e))?;
    match existing {
        None => Ok("absent:"),
        Some(ns) if owned(&ns) => Ok(if delete(api, name).await? {
            "deleted"
        } else {
            "absent:"
        }),
        Some(_) => {
            eprintln!(
                "kept Namespace/{name}: it existed before `kubectl ns install` (no {}={} label); its {} label \
                 stays (remove it with `kubectl label namespace {name} {}-`)",
                MANAGED_BY.0, MANAGED_BY.1, POD_SECURITY.0, POD_SECURITY.0
            );
            Ok("kept")
        }
    }
}

pub async fn uninstall(args: UninstallArgs) -> Result<u8, Failure> {
    route::no_direct_agent(&args.kube, "uninstall")?;
    route::no_pod_namespace(&args.kube, "uninstall")?;
    let r = route::resolver(&args.kube).await?;
    let objects = manifests::objects(&args.kube.agent_namespace, &manifests::default_image())?;
    let c = &r.client;
    let ns = &args.kube.agent_namespace;
    // Reverse order: the agents go first, the namespace last.
    for o in objects.iter().rev() {
        let name = o.describe();
        let short = name.split_once('/').map(|(_, n)| n).unwrap_or("");
        let gone = |deleted: bool| if deleted { "deleted" } else { "absent:" };
        let what = match o {
            Object::DaemonSet(_) => gone(delete(Api::<DaemonSet>::namespaced(c.clone(), ns), short).await?),
            Object::Role(_) => gone(delete(Api::<Role>::namespaced(c.clone(), ns), short).await?),
            Object::RoleBinding(b) => {
                let in_ns = b.metadata.namespace.as_deref().unwrap_or(ns);
                gone(delete(Api::<RoleBinding>::namespaced(c.clone(), in_ns), short).await?)
            }
            Object::ClusterRole(_) => gone(delete(Api::<ClusterRole>::all(c.clone()), short).await?),
            Object::ClusterRoleBinding(_) => {
                gone(delete(Api::<ClusterRoleBinding>::all(c.clone()), short).await?)
            }
            Object::ServiceAccount(_) => {
                gone(delete(Api::<ServiceAccount>::namespaced(c.clone(), ns), short).await?)
            }
            Object::Namespace(_) => delete_namespace(Api::<Namespace>::all(c.clone()), short).await?,
        };
        if what != "kept" {
            eprintln!("{what} {name}");
        }
    }
    println!("kubectl-ns agent removed from namespace {ns}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(crate::label_map(labels)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn manifest(name: &str) -> Namespace {
        ns(name, &[PART_OF, POD_SECURITY])
    }

    #[test]
    fn created_namespace_is_marked_as_ours() {
        let (ns, warning) = namespace_to_apply(&manifest("debug"), None);
        let ns = ns.unwrap();
        assert!(has_label(&ns, MANAGED_BY) && has_label(&ns, POD_SECURITY));
        assert!(warning.is_none());
        assert!(owned(&ns));
    }

    #[test]
    fn someone_elses_namespace_gets_only_the_pod_security_label_with_a_warning() {
        let (apply, warning) = namespace_to_apply(
            &manifest("monitoring"),
            Some(&ns("monitoring", &[("team", "obs")])),
        );
        let apply = apply.unwrap();
        assert!(!has_label(&apply, MANAGED_BY) && !has_label(&apply, PART_OF));
        assert!(has_label(&apply, POD_SECURITY));
        assert!(warning.unwrap().contains("monitoring existed before"));
        let labelled = ns("monitoring", &[POD_SECURITY]);
        assert!(matches!(
            namespace_to_apply(&manifest("monitoring"), Some(&labelled)),
            (None, None)
        ));
        assert!(!owned(&labelled));
    }

    #[test]
    fn older_installs_of_the_default_namespace_stay_ours() {
        assert!(owned(&ns(AGENT_NAMESPACE, &[PART_OF])));
        assert!(!owned(&ns("monitoring", &[PART_OF])));
    }
}
