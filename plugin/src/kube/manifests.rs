//! The agent's manifests, embedded from `manifests/` (the one source of
//! truth, also usable with `kubectl apply -k manifests/`), parsed into typed
//! objects with the namespace and image the user chose.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;

use crate::error::{Failure, InstallError};
use crate::kube::resolve::AGENT_NAMESPACE;

/// The files, in the order they are applied.
pub const FILES: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../manifests/namespace.yaml"),
    ),
    (
        "agent-rbac.yaml",
        include_str!("../../../manifests/agent-rbac.yaml"),
    ),
    (
        "user-rbac.yaml",
        include_str!("../../../manifests/user-rbac.yaml"),
    ),
    (
        "daemonset.yaml",
        include_str!("../../../manifests/daemonset.yaml"),
    ),
];

/// The agent DaemonSet's name, as `daemonset.yaml` gives it.
pub const DAEMONSET_NAME: &str = "kubectl-ns-agent";

/// The agent image matching this plugin.
pub fn default_image() -> String {
    format!(
        "{}:{}",
        kns_proto::AGENT_IMAGE_REPOSITORY,
        env!("CARGO_PKG_VERSION")
    )
}

/// One object of the manifests.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    /// In the namespace it names (kube-system), not the agent's.
    RoleBinding(RoleBinding),
    DaemonSet(Box<DaemonSet>),
}

impl Object {
    /// `Kind/name`, for progress lines.
    pub fn describe(&self) -> String {
        let (kind, meta) = match self {
            Object::Namespace(o) => ("Namespace", &o.metadata),
            Object::ServiceAccount(o) => ("ServiceAccount", &o.metadata),
            Object::ClusterRole(o) => ("ClusterRole", &o.metadata),
            Object::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
            Object::Role(o) => ("Role", &o.metadata),
            Object::RoleBinding(o) => ("RoleBinding", &o.metadata),
            Object::DaemonSet(o) => ("DaemonSet", &o.metadata),
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or(""))
    }
}

fn parse_doc(file: &str, doc: serde_json::Value) -> Result<Object, String> {
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("").to_owned();
    let err = |e: serde_json::Error| format!("{file}: {kind}: {e}");
    Ok(match kind.as_str() {
        "Namespace" => Object::Namespace(serde_json::from_value(doc).map_err(err)?),
        "ServiceAccount" => Object::ServiceAccount(serde_json::from_value(doc).map_err(err)?),
        "ClusterRole" => Object::ClusterRole(serde_json::from_value(doc).map_err(err)?),
        "ClusterRoleBinding" => Object::ClusterRoleBinding(serde_json::from_value(doc).map_err(err)?),
        "Role" => Object::Role(serde_json::from_value(doc).map_err(err)?),
        "RoleBinding" => Object::RoleBinding(serde_json::from_value(doc).map_err(err)?),
        "DaemonSet" => Object::DaemonSet(Box::new(serde_json::from_value(doc).map_err(err)?)),
        other => return Err(format!("{file}: unexpected kind `{other}`")),
    })
}

/// Every object of the embedded manifests, as written.
pub fn parse() -> Result<Vec<Object>, String> {
    let mut out = Vec::new();
    for (file, text) in FILES {
        for doc in yaml_serde::Deserializer::from_str(text) {
            let v = serde_json::Value::deserialize(doc).map_err(|e| format!("{file}: {e}"))?;
            if !v.is_null() {
                out.push(parse_doc(file, v)?);
            }
        }
    }
    Ok(out)
}

/// The objects to apply: the agent namespace and image substituted.
pub fn objects(agent_namespace: &str, image: &str) -> Result<Vec<Object>, Failure> {
    let mut objs = parse().map_err(InstallError::Manifests)?;
    for o in &mut objs {
        match o {
            Object::Namespace(n) if n.metadata.name.as_deref() == Some(AGENT_NAMESPACE) => {
                n.metadata.name = Some(agent_namespace.to_owned());
            }
            Object::ServiceAccount(s) => s.metadata.namespace = Some(agent_namespace.to_owned()),
            Object::Role(r) => r.metadata.namespace = Some(agent_namespace.to_owned()),
            // The agent's ServiceAccount lives where the agent does.
            Object::ClusterRoleBinding(ClusterRoleBinding { subjects, .. })
            | Object::RoleBinding(RoleBinding { subjects, .. }) => {
                for s in subjects.iter_mut().flatten() {
                    if s.kind == "ServiceAccount" {
                        s.namespace = Some(agent_namespace.to_owned());
                    }
                }
            }
            Object::DaemonSet(d) => {
                d.metadata.namespace = Some(agent_namespace.to_owned());
                for c in d
                    .spec
                    .iter_mut()
                    .flat_map(|s| s.template.spec.iter_mut())
                    .flat_map(|p| &mut p.containers)
                {
                    c.image = Some(image.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(objs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::placement::{ARCH_LABEL, OS_LABEL};

    #[test]
    fn manifests_parse_into_typed_objects() {
        let objs = parse().unwrap();
        let kinds: Vec<String> = objs.iter().map(Object::describe).collect();
        assert_eq!(
            kinds,
            [
                "Namespace/kubectl-ns-system",
                "ServiceAccount/kubectl-ns-agent",
                "ClusterRole/kubectl-ns-agent",
                "ClusterRoleBinding/kubectl-ns-agent",
                "RoleBinding/kubectl-ns-agent-client-ca",
                "ClusterRole/kubectl-ns-user",
                "Role/kubectl-ns-user",
                "ClusterRole/kubectl-ns-node-admin",
                "ClusterRole/kubectl-ns-session-admin",
                "ClusterRole/kubectl-ns-recording-viewer",
                &format!("DaemonSet/{DAEMONSET_NAME}"),
            ]
        );
    }

    /// Every file of manifests/ is embedded, byte for byte, and listed in
    /// the kustomization.
    #[test]
    fn embedded_copy_equals_the_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        for (f, text) in FILES {
            assert_eq!(&std::fs::read_to_string(dir.join(f)).unwrap(), text, "{f}");
            assert!(
                kustomization.contains(&format!("- {f}")),
                "{f} missing from kustomization.yaml"
            );
        }
    }

    #[test]
    fn daemonset_is_as_documented() {
        let ds = parse()
            .unwrap()
            .into_iter()
            .find_map(|o| match o {
                Object::DaemonSet(d) => Some(d),
                _ => None,
            })
            .unwrap();
        let template = ds.spec.unwrap().template;
        // Prometheus' pod discovery finds the metrics by these (README,
        // "Metrics").
        let annotations = template.metadata.and_then(|m| m.annotations).unwrap_or_default();
        for (k, v) in [
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "7471"),
            ("prometheus.io/path", "/metrics"),
        ] {
            assert_eq!(annotations.get(k).map(String::as_str), Some(v), "{k}");
        }
        let pod = template.spec.unwrap();
        assert_eq!(pod.host_pid, Some(true));
        assert_eq!(pod.host_network, Some(false));
        // The token the agent's reviews need.
        assert_eq!(pod.automount_service_account_token, Some(true));
        let env = pod.containers[0].env.clone().unwrap_or_default();
        let node_name = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
        assert_eq!(
            node_name
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("spec.nodeName")
        );
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some(default_image().as_str()),
            "manifest image tag = crate version"
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_ne!(sc.privileged, Some(true));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
        // The program itself, not only its arguments: args alone replace an
        // image's Cmd, and a Cmd-only image then runs `--listen`.
        assert_eq!(c.command.as_deref(), Some(&["/kubectl-ns-agent".to_owned()][..]));
        let args = c.args.clone().unwrap().join(" ");
        assert!(
            args.contains("tcp://127.0.0.1:7469") && args.contains("tls://127.0.0.1:7470"),
            "{args}"
        );
        assert!(args.contains("--metrics-listen 0.0.0.0:7471"), "{args}");
        // The one port the pod's IP serves, named for a PodMonitor; the
        // session ports are on its loopback and declare none.
        let ports: Vec<_> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(ports, [(Some("metrics"), 7471)]);
        let node = |labels: &[(&str, &str)]| k8s_openapi::api::core::v1::Node {
            metadata: kube::api::ObjectMeta {
                labels: Some(crate::label_map(labels)),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(crate::kube::placement::selects(
            &pod,
            &node(&[(OS_LABEL, "linux"), (ARCH_LABEL, "amd64")])
        ));
        assert!(!crate::kube::placement::selects(
            &pod,
            &node(&[(OS_LABEL, "windows"), (ARCH_LABEL, "amd64")])
        ));
        assert!(!crate::kube::placement::selects(
            &pod,
            &node(&[(OS_LABEL, "linux"), (ARCH_LABEL, "arm64")])
        ));
        // The agent's default listener is a unix socket: the probe must ask
        // where the pod's agent listens.
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        let probe = probe.command.as_deref().unwrap();
        assert_eq!(probe.last().map(String::as_str), Some("probe"));
        assert!(
            probe.join(" ").contains("--listen tcp://127.0.0.1:7469"),
            "{probe:?}"
        );
    }

    /// The agent may ask the two review questions and nothing else; the
    /// user role reaches agents but grants nothing on targets.
    #[test]
    fn rbac_is_least_privilege() {
        let objs = parse().unwrap();
        let rules = |name: &str| -> Vec<String> {
            objs.iter()
                .find_map(|o| match o {
                    Object::ClusterRole(r) if r.metadata.name.as_deref() == Some(name) => Some(r),
                    _ => None,
                })
                .unwrap()
                .rules
                .iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{} {:?} {:?}",
                        r.verbs.join(","),
                        r.api_groups.clone().unwrap_or_default(),
                        r.resources.clone().unwrap_or_default()
                    )
                })
                .collect()
        };
        assert_eq!(
            rules("kubectl-ns-agent"),
            [
                r#"create ["authentication.k8s.io"] ["tokenreviews"]"#,
                r#"create ["authorization.k8s.io"] ["subjectaccessreviews"]"#
            ]
        );
        // The client CA, and only through the Role clusters have for it.
        let client_ca: Vec<_> = objs
            .iter()
            .filter_map(|o| match o {
                Object::RoleBinding(b) => Some((b.metadata.namespace.as_deref(), b.role_ref.name.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            client_ca,
            [(Some("kube-system"), "extension-apiserver-authentication-reader")]
        );
        assert_eq!(
            rules("kubectl-ns-node-admin"),
            [r#"create ["kubectl-ns.io"] ["nodes/exec"]"#]
        );
        assert_eq!(
            rules("kubectl-ns-session-admin"),
            [r#"list,delete ["kubectl-ns.io"] ["nodes/sessions"]"#]
        );
        assert_eq!(
            rules("kubectl-ns-recording-viewer"),
            [r#"get ["kubectl-ns.io"] ["nodes/recordings"]"#]
        );
        assert!(
            rules("kubectl-ns-user")
                .iter()
                .all(|r| !r.contains("exec") && !r.contains("create")),
            "{:?}",
            rules("kubectl-ns-user")
        );
    }

    #[test]
    fn objects_take_the_chosen_namespace_and_image() {
        let objs = objects("debug-tools", "registry.local/agent:dev").unwrap();
        for o in &objs {
            match o {
                Object::Namespace(n) => assert_eq!(n.metadata.name.as_deref(), Some("debug-tools")),
                Object::ServiceAccount(s) => assert_eq!(s.metadata.namespace.as_deref(), Some("debug-tools")),
                Object::Role(r) => assert_eq!(r.metadata.namespace.as_deref(), Some("debug-tools")),
                Object::DaemonSet(d) => {
                    assert_eq!(d.metadata.namespace.as_deref(), Some("debug-tools"));
                    let image = d
                        .spec
                        .as_ref()
                        .unwrap()
                        .template
                        .spec
                        .as_ref()
                        .unwrap()
                        .containers[0]
                        .image
                        .clone();
                    assert_eq!(image.as_deref(), Some("registry.local/agent:dev"));
                }
                Object::ClusterRoleBinding(ClusterRoleBinding { subjects, .. })
                | Object::RoleBinding(RoleBinding { subjects, .. }) => {
                    let sa = &subjects.as_ref().unwrap()[0];
                    assert_eq!(sa.namespace.as_deref(), Some("debug-tools"));
                }
                Object::ClusterRole(_) => {}
            }
        }
    }
}
