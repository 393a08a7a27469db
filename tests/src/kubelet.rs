//! What the kubelet asks the runtime for, derived from a Kubernetes pod
//! spec field by field, so a test runs an image exactly as a DaemonSet
//! would and any drift between the manifest and the image fails.
//!
//! The kubelet passes a container's `command` to CRI `ContainerConfig.command`
//! and `args` to `ContainerConfig.args`, each empty when unset; the runtime
//! then applies the image's Entrypoint/Cmd rules (`command` replaces the
//! Entrypoint and drops Cmd, `args` alone replace Cmd). Nothing is filled in
//! here. Fields the lab cannot reproduce make the mapping fail rather than
//! be ignored.
//!
//! Test-only changes go through [`set_env`] and [`set_host_path`], on the
//! Kubernetes objects, as a kustomize patch would.

use std::path::PathBuf;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1 as k8s;

use crate::containerd::PodSpec;

/// Sets the value of the container's env var `name`, which the manifest
/// must already define (a patch of a missing var would hide drift).
pub fn set_env(container: &mut k8s::Container, name: &str, value: &str) -> anyhow::Result<()> {
    let var = container
        .env
        .iter_mut()
        .flatten()
        .find(|e| e.name == name)
        .with_context(|| format!("container {} has no env var {name} to patch", container.name))?;
    var.value = Some(value.to_owned());
    var.value_from = None;
    Ok(())
}

/// Points the hostPath volume `volume` at `path`.
pub fn set_host_path(pod: &mut k8s::PodSpec, volume: &str, path: PathBuf) -> anyhow::Result<()> {
    let v = pod
        .volumes
        .iter_mut()
        .flatten()
        .find(|v| v.name == volume)
        .and_then(|v| v.host_path.as_mut())
        .with_context(|| format!("the pod has no hostPath volume {volume} to patch"))?;
    v.path = path.display().to_string();
    Ok(())
}

/// Gives the configMap volume `volume` the files the kubelet would write
/// for it (a directory holding one file per key; empty for an optional
/// ConfigMap that does not exist), mounted read-only as the kubelet does.
pub fn set_config_map(pod: &mut k8s::PodSpec, volume: &str, files: PathBuf) -> anyhow::Result<()> {
    let v = pod
        .volumes
        .iter_mut()
        .flatten()
        .find(|v| v.name == volume && v.config_map.is_some())
        .with_context(|| format!("the pod has no configMap volume {volume} to fill"))?;
    v.config_map = None;
    v.host_path = Some(k8s::HostPathVolumeSource {
        path: files.display().to_string(),
        type_: None,
    });
    for c in &mut pod.containers {
        for m in c.volume_mounts.iter_mut().flatten().filter(|m| m.name == volume) {
            m.read_only = Some(true);
        }
    }
    Ok(())
}

/// Where a pod's ServiceAccount token, CA and namespace are mounted.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What a pod that automounts its ServiceAccount token gets besides its
/// spec: the token, CA and namespace (`files`) read-only at
/// [`SERVICE_ACCOUNT_MOUNT`], and the API server's in-cluster address in
/// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
pub fn service_account(
    spec: &mut PodSpec,
    pod: &k8s::PodSpec,
    files: PathBuf,
    host: &str,
    port: u16,
) -> anyhow::Result<()> {
    if pod.automount_service_account_token != Some(true) {
        bail!("the pod does not automount its ServiceAccount token");
    }
    spec.mounts.push((files, SERVICE_ACCOUNT_MOUNT.to_owned(), true));
    spec.env.push(("KUBERNETES_SERVICE_HOST".into(), host.into()));
    spec.env
        .push(("KUBERNETES_SERVICE_PORT".into(), port.to_string()));
    Ok(())
}

/// Kubernetes expands `$(VAR)` in command, args and env values; the lab
/// does not, so a manifest that relies on it must not pass silently.
fn literal(field: &str, s: &str) -> anyhow::Result<String> {
    if s.contains("$(") {
        bail!("{field} `{s}` uses $(VAR) expansion, which the lab does not reproduce");
    }
    Ok(s.to_owned())
}

fn literals(field: &str, v: &Option<Vec<String>>) -> anyhow::Result<Vec<String>> {
    v.iter().flatten().map(|s| literal(field, s)).collect()
}

/// The lab pod (sandbox and container config) for container `container`
/// of `pod`, named `name` in the runtime.
pub fn pod_spec(name: &str, pod: &k8s::PodSpec, container: &str) -> anyhow::Result<PodSpec> {
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == container)
        .with_context(|| format!("the pod has no container {container}"))?;
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) || c.working_dir.is_some() {
        bail!("envFrom and workingDir are not reproduced by the lab");
    }
    let env = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let field = e
                .value_from
                .as_ref()
                .map(|v| v.field_ref.as_ref().map(|f| f.field_path.as_str()));
            match field {
                None => Ok((e.name.clone(), literal("env", e.value.as_deref().unwrap_or(""))?)),
                // The downward API, as far as the manifests use it: the
                // node the scheduler bound the pod to.
                Some(Some("spec.nodeName")) => Ok((
                    e.name.clone(),
                    pod.node_name.clone().with_context(|| {
                        format!(
                            "env {}: spec.nodeName, but the pod is not bound to a node",
                            e.name
                        )
                    })?,
                )),
                Some(_) => bail!(
                    "env {}: valueFrom other than fieldRef spec.nodeName is not reproduced by the lab",
                    e.name
                ),
            }
        })
        .collect::<anyhow::Result<_>>()?;
    let mounts = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            if m.sub_path.is_some() || m.sub_path_expr.is_some() || m.mount_propagation.is_some() {
                bail!(
                    "volumeMount {}: subPath and mountPropagation are not reproduced by the lab",
                    m.name
                );
            }
            let host = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == m.name)
                .and_then(|v| v.host_path.as_ref())
                .with_context(|| {
                    format!(
                        "volumeMount {}: no hostPath volume of that name (fill a configMap one with set_config_map)",
                        m.name
                    )
                })?;
            Ok((
                PathBuf::from(&host.path),
                m.mount_path.clone(),
                m.read_only == Some(true),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let sc = c.security_context.clone().unwrap_or_default();
    if sc.run_as_non_root.is_some() || sc.se_linux_options.is_some() {
        bail!("runAsNonRoot and seLinuxOptions are not reproduced by the lab");
    }
    let psc = pod.security_context.clone().unwrap_or_default();
    // The container's seccompProfile wins over the pod's; none is
    // Unconfined (the kubelet sends no profile).
    let seccomp_default = match sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref()) {
        None => false,
        Some(p) if p.type_ == "Unconfined" => false,
        Some(p) if p.type_ == "RuntimeDefault" => true,
        Some(p) => bail!("seccompProfile type {} is not reproduced by the lab", p.type_),
    };
    let caps = sc.capabilities.unwrap_or_default();
    Ok(PodSpec {
        name: name.to_owned(),
        host_network: pod.host_network == Some(true),
        host_pid: pod.host_pid == Some(true),
        host_ipc: pod.host_ipc == Some(true),
        image: c.image.clone().context("the container has no image")?,
        command: literals("command", &c.command)?,
        args: literals("args", &c.args)?,
        env,
        mounts,
        caps_add: caps.add.unwrap_or_default(),
        caps_drop: caps.drop.unwrap_or_default(),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        // A container's runAsUser and runAsGroup win over the pod's.
        run_as_user: sc.run_as_user.or(psc.run_as_user),
        run_as_group: sc.run_as_group.or(psc.run_as_group),
        supplemental_groups: psc.supplemental_groups.unwrap_or_default(),
        // As the kubelet maps allowPrivilegeEscalation.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        privileged: sc.privileged == Some(true),
        seccomp_default,
        // Not the kubelet's: the caller waits for the agent's ports.
        listens: None,
        memory_limit: c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref()?.get("memory"))
            .map(|q| quantity(&q.0))
            .transpose()?,
    })
}

/// A memory quantity as the manifests write them (`512Mi`, bytes).
fn quantity(q: &str) -> anyhow::Result<i64> {
    let (digits, unit) = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(u, m)| q.strip_suffix(u).map(|d| (d, *m)))
        .unwrap_or((q, 1));
    digits
        .parse::<i64>()
        .map(|n| n * unit)
        .with_context(|| format!("memory quantity {q:?} is not reproduced by the lab"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(command: Option<Vec<&str>>, args: Option<Vec<&str>>) -> k8s::PodSpec {
        let strings = |v: Option<Vec<&str>>| v.map(|v| v.into_iter().map(String::from).collect());
        k8s::PodSpec {
            containers: vec![k8s::Container {
                name: "c".into(),
                image: Some("img".into()),
                command: strings(command),
                args: strings(args),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_pass_through_empty_when_unset() {
        let s = pod_spec("p", &pod(None, Some(vec!["--listen", "x"])), "c").unwrap();
        assert!(s.command.is_empty());
        assert_eq!(s.args, ["--listen", "x"]);
        let s = pod_spec("p", &pod(Some(vec!["/bin/a"]), None), "c").unwrap();
        assert_eq!(s.command, ["/bin/a"]);
        assert!(s.args.is_empty());
    }

    #[test]
    fn unreproducible_fields_fail() {
        let err = pod_spec("p", &pod(None, Some(vec!["$(HOME)"])), "c").unwrap_err();
        assert!(err.to_string().contains("$(VAR)"), "{err}");
        let mut p = pod(None, None);
        p.containers[0].volume_mounts = Some(vec![k8s::VolumeMount {
            name: "v".into(),
            mount_path: "/v".into(),
            ..Default::default()
        }]);
        assert!(pod_spec("p", &p, "c").is_err());
    }

    #[test]
    fn the_node_name_comes_from_the_binding() {
        let mut p = pod(None, None);
        p.containers[0].env = Some(vec![k8s::EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(k8s::EnvVarSource {
                field_ref: Some(k8s::ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let err = pod_spec("p", &p, "c").unwrap_err();
        assert!(err.to_string().contains("not bound"), "{err}");
        p.node_name = Some("n1".into());
        assert_eq!(
            pod_spec("p", &p, "c").unwrap().env,
            [("NODE_NAME".to_owned(), "n1".to_owned())]
        );
    }
}
