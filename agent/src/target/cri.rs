//! The CRI client: asking the node's container runtime which host process a
//! container is, which pod it belongs to, and which containers run. What
//! its answers carry is read in [`crate::target::oci`]; when no runtime
//! answers, [`crate::target::cgroup_scan`] finds the process from /proc.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use kns_proto::cri::runtime_service_client::RuntimeServiceClient;
use kns_proto::cri::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest, ListContainersRequest,
    ListPodSandboxRequest, PodSandboxState, PodSandboxStatusRequest, VersionRequest,
};
use tonic::transport::Channel;

use crate::metrics::Metrics;
use crate::target::oci::{ProcessSpec, identity_from_info, pid_from_info};

/// Where CRI runtimes put their sockets: containerd, CRI-O, k3s and rke2,
/// k0s, microk8s, cri-dockerd. The first that answers wins.
pub const WELL_KNOWN_ENDPOINTS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/k0s/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
    "/run/cri-dockerd.sock",
];

/// How long a runtime has to answer before it counts as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every other call's deadline: a runtime that hangs (it happens under
/// heavy load) must not hang the session, which then falls back to
/// finding the container by its cgroup.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `call`, failing as UNAVAILABLE when the runtime gives no answer in time.
async fn deadline<T>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::unavailable(format!(
                "no answer within {} s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("no CRI runtime answered at {tried}")]
    NoRuntime { tried: String },
    // The status's message, not its Display, which adds the code and the
    // transport error's debug form.
    #[error("the CRI runtime at {endpoint} did not answer: {}", .source.message())]
    Unavailable {
        endpoint: String,
        #[source]
        source: Box<tonic::Status>,
    },
    #[error("container {id} is not known to the runtime at {endpoint}")]
    NotFound { id: String, endpoint: String },
    #[error("container {id} is not running (state {state}{reason})")]
    NotRunning {
        id: String,
        state: String,
        reason: String,
    },
    #[error(
        "the runtime's status for {id} carries no pid (is it a VM-sandboxed runtime such as kata or gVisor?)"
    )]
    NoPid { id: String },
    #[error("container ID prefix {id} is ambiguous: it starts {}; give more of the ID", candidates.join(", "))]
    Ambiguous { id: String, candidates: Vec<String> },
    #[error("the CRI runtime at {endpoint} failed: {source}")]
    Call {
        endpoint: String,
        #[source]
        source: Box<tonic::Status>,
    },
}

/// A container's host process as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPid {
    /// The full ID, as the runtime names it (the request may be a prefix).
    pub id: String,
    pub pid: i32,
    /// The identity the runtime gave the container's processes; `None` for
    /// a pod sandbox, a runtime whose verbose status lacks the OCI spec, or
    /// a container found by its cgroup.
    pub identity: Option<ProcessSpec>,
    /// The pod the kubelet labelled the container (or sandbox) with; `None`
    /// for containers no kubelet made, or found without a runtime.
    pub pod: Option<PodRef>,
}

/// A pod by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// The pod in the labels the kubelet puts on every container and sandbox
/// it creates (`io.kubernetes.pod.namespace`, `io.kubernetes.pod.name`).
pub fn pod_from_labels(labels: &HashMap<String, String>) -> Option<PodRef> {
    let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    Some(PodRef {
        namespace: get("io.kubernetes.pod.namespace")?,
        name: get("io.kubernetes.pod.name")?,
    })
}

/// A running container as the runtime lists it, with the pod it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
}

/// The labels the kubelet puts on every container it creates.
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";

const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// A container's pod identity: the kubelet's labels, else its sandbox's
/// metadata (which the kubelet also sets from the pod, and which containers
/// made by other CRI clients carry too), else its own metadata's name.
fn listed(
    c: kns_proto::cri::Container,
    sandboxes: &HashMap<String, kns_proto::cri::PodSandboxMetadata>,
) -> Listed {
    let sandbox = sandboxes.get(&c.pod_sandbox_id).cloned().unwrap_or_default();
    let label = |key: &str, fallback: String| c.labels.get(key).cloned().unwrap_or(fallback);
    Listed {
        name: label(CONTAINER_NAME_LABEL, c.metadata.clone().unwrap_or_default().name),
        pod_name: label(POD_NAME_LABEL, sandbox.name),
        pod_namespace: label(POD_NAMESPACE_LABEL, sandbox.namespace),
        pod_uid: label(POD_UID_LABEL, sandbox.uid),
        id: c.id,
        sandbox_id: c.pod_sandbox_id,
    }
}

/// A connected CRI runtime.
#[derive(Debug, Clone)]
pub struct Cri {
    client: RuntimeServiceClient<Channel>,
    endpoint: String,
    /// "containerd 1.6.20".
    pub runtime: String,
    metrics: Metrics,
}

fn unix_channel(path: &str) -> Channel {
    kns_proto::unix_endpoint(path)
        .connect_timeout(PROBE_TIMEOUT)
        .connect_lazy()
}

impl Cri {
    /// Connects to `endpoint` (a socket path or `unix://` URL) and checks it
    /// answers `Version`. Its failed calls are counted in `metrics`.
    pub async fn connect(endpoint: &str, metrics: &Metrics) -> Result<Cri, CriError> {
        let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
        let mut client = RuntimeServiceClient::new(unix_channel(path));
        let v = tokio::time::timeout(PROBE_TIMEOUT, client.version(VersionRequest::default()))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no answer in time"))
            .and_then(|r| r)
            .map_err(|s| {
                metrics.cri_error("Version", &s);
                CriError::Unavailable {
                    endpoint: path.to_owned(),
                    source: Box::new(s),
                }
            })?
            .into_inner();
        metrics.runtime(&v.runtime_name, &v.runtime_version);
        Ok(Cri {
            client,
            endpoint: path.to_owned(),
            runtime: format!("{} {}", v.runtime_name, v.runtime_version),
            metrics: metrics.clone(),
        })
    }

    /// Tries the well-known sockets that exist and returns the first that
    /// answers.
    pub async fn detect(metrics: &Metrics) -> Result<Cri, CriError> {
        let mut tried = Vec::new();
        for ep in WELL_KNOWN_ENDPOINTS {
            if !Path::new(ep).exists() {
                continue;
            }
            match Cri::connect(ep, metrics).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(endpoint = ep, error = %e, "CRI endpoint did not answer");
                    tried.push(*ep);
                }
            }
        }
        Err(CriError::NoRuntime {
            tried: if tried.is_empty() {
                format!("any of {}", WELL_KNOWN_ENDPOINTS.join(", "))
            } else {
                tried.join(", ")
            },
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The host PID of a running container, or of a pod sandbox's pause
    /// process when `id` names a sandbox.
    pub async fn container_pid(&self, id: &str) -> Result<ContainerPid, CriError> {
        let mut client = self.client.clone();
        let resp = deadline(client.container_status(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        }))
        .await;
        let resp = match resp {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return self.sandbox_pid(id).await,
            Err(s) => return Err(self.call_error("ContainerStatus", s)),
        };
        let status = resp.status.unwrap_or_default();
        let full_id = if status.id.is_empty() {
            id.to_owned()
        } else {
            status.id.clone()
        };
        let state = ContainerState::try_from(status.state).unwrap_or(ContainerState::ContainerUnknown);
        if state != ContainerState::ContainerRunning {
            let mut reason = String::new();
            if !status.reason.is_empty() {
                reason = format!(", reason {}", status.reason);
            }
            if state == ContainerState::ContainerExited {
                reason.push_str(&format!(", exit code {}", status.exit_code));
            }
            return Err(CriError::NotRunning {
                id: full_id,
                state: state.as_str_name().trim_start_matches("CONTAINER_").to_owned(),
                reason,
            });
        }
        let pid = pid_from_info(&resp.info).ok_or_else(|| CriError::NoPid { id: full_id.clone() })?;
        Ok(ContainerPid {
            id: full_id,
            pid,
            identity: identity_from_info(&resp.info),
            pod: pod_from_labels(&status.labels),
        })
    }

    async fn sandbox_pid(&self, id: &str) -> Result<ContainerPid, CriError> {
        let mut client = self.client.clone();
        let resp = deadline(client.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        }))
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => CriError::NotFound {
                id: id.to_owned(),
                endpoint: self.endpoint.clone(),
            },
            _ => self.call_error("PodSandboxStatus", s),
        })?
        .into_inner();
        let status = resp.status.unwrap_or_default();
        let full_id = if status.id.is_empty() {
            id.to_owned()
        } else {
            status.id.clone()
        };
        if status.state != PodSandboxState::SandboxReady as i32 {
            return Err(CriError::NotRunning {
                id: full_id,
                state: "SANDBOX_NOTREADY".into(),
                reason: String::new(),
            });
        }
        let pid = pid_from_info(&resp.info).ok_or_else(|| CriError::NoPid { id: full_id.clone() })?;
        // The pause process's identity is no workload's: -m into a sandbox
        // needs --privileged.
        Ok(ContainerPid {
            id: full_id,
            pid,
            identity: None,
            pod: pod_from_labels(&status.labels),
        })
    }

    /// Every running container with its pod: two calls (ListContainers and
    /// ListPodSandbox, concurrently), however many containers there are.
    pub async fn list_running(&self) -> Result<Vec<Listed>, CriError> {
        let (mut containers, mut sandboxes) = (self.client.clone(), self.client.clone());
        let running = ListContainersRequest {
            filter: Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        };
        let (cs, ss) = tokio::join!(
            deadline(containers.list_containers(running)),
            deadline(sandboxes.list_pod_sandbox(ListPodSandboxRequest::default())),
        );
        let cs = cs
            .map_err(|s| self.call_error("ListContainers", s))?
            .into_inner()
            .containers;
        let ss: HashMap<String, _> = ss
            .map_err(|s| self.call_error("ListPodSandbox", s))?
            .into_inner()
            .items
            .into_iter()
            .map(|s| (s.id, s.metadata.unwrap_or_default()))
            .collect();
        Ok(cs.into_iter().map(|c| listed(c, &ss)).collect())
    }

    /// `call`'s failure, counted.
    fn call_error(&self, call: &'static str, s: tonic::Status) -> CriError {
        self.metrics.cri_error(call, &s);
        let endpoint = self.endpoint.clone();
        if s.code() == tonic::Code::Unavailable {
            CriError::Unavailable {
                endpoint,
                source: Box::new(s),
            }
        } else {
            CriError::Call {
                endpoint,
                source: Box::new(s),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Caps, Creds};
    use crate::target::cgroup_scan::*;
    use crate::target::oci::*;

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containerd_info_shape() {
        let doc = r#"{"sandboxID":"abc","pid":4242,"removing":false,"runtimeSpec":{"process":{}}}"#;
        assert_eq!(pid_from_info(&info(&[("info", doc)])), Some(4242));
    }

    /// CRI-O ≥ 1.18 (fixture from its verbose ContainerStatus): "info"
    /// holds the JSON document with "pid" next to its own fields.
    #[test]
    fn crio_info_shape() {
        let doc =
            r#"{"sandboxID":"5e1c","pid":31337,"privileged":false,"runtimeSpec":{"ociVersion":"1.0.2-dev"}}"#;
        assert_eq!(pid_from_info(&info(&[("info", doc)])), Some(31337));
    }

    /// containerd 1.6's verbose info for a container with runAsUser 1000,
    /// runAsGroup 1000, supplementalGroups [2000], capabilities drop ALL,
    /// add NET_BIND_SERVICE, allowPrivilegeEscalation false (trimmed).
    const CONTAINERD_SPEC: &str = r#"{"pid":77,"runtimeSpec":{"ociVersion":"1.0.2-dev","process":{
        "user":{"uid":1000,"gid":1000,"additionalGids":[1000,2000]},"args":["/bin/sleep","1000"],
        "capabilities":{"bounding":["CAP_NET_BIND_SERVICE"],"effective":["CAP_NET_BIND_SERVICE"],
        "permitted":["CAP_NET_BIND_SERVICE"]},"noNewPrivileges":true},
        "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}}}}"#;

    #[test]
    fn identity_from_a_containerd_spec() {
        let got = identity_from_info(&info(&[("info", CONTAINERD_SPEC)])).unwrap();
        let bind = 1 << 10;
        assert_eq!(
            got,
            ProcessSpec {
                creds: Creds {
                    uid: 1000,
                    gid: 1000,
                    groups: vec![1000, 2000],
                    caps: Caps {
                        bounding: bind,
                        effective: bind,
                        permitted: bind,
                        inheritable: 0,
                        ambient: 0
                    },
                    no_new_privs: true,
                },
                seccomp: Some(serde_json::json!({"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]})),
            }
        );
    }

    #[test]
    fn identity_fails_closed() {
        // No spec, no user, a uid that is not a number: no identity.
        for doc in [
            r#"{"pid":1}"#,
            r#"{"runtimeSpec":{"process":{}}}"#,
            r#"{"runtimeSpec":{"process":{"user":{"uid":"0","gid":0}}}}"#,
            r#"{"runtimeSpec":{"process":{"user":{"uid":0,"gid":0,"additionalGids":["x"]}}}}"#,
        ] {
            assert_eq!(identity_from_info(&info(&[("info", doc)])), None, "{doc}");
        }
        // Unknown capability names are not granted; absent sets are empty.
        let doc = r#"{"runtimeSpec":{"process":{"user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_FUTURE","CAP_CHOWN"]}}}}"#;
        let got = identity_from_info(&info(&[("info", doc)])).unwrap();
        assert_eq!(got.creds.caps.bounding, 1);
        assert_eq!(got.creds.caps.effective, 0);
        assert!(!got.creds.no_new_privs && got.seccomp.is_none());
    }

    #[test]
    fn old_crio_top_level_pid() {
        assert_eq!(pid_from_info(&info(&[("pid", "777")])), Some(777));
        assert_eq!(pid_from_info(&info(&[("pid", "\"778\"")])), Some(778));
    }

    #[test]
    fn missing_or_zero_pid() {
        assert_eq!(pid_from_info(&info(&[])), None);
        assert_eq!(pid_from_info(&info(&[("info", r#"{"pid":0}"#)])), None);
        assert_eq!(pid_from_info(&info(&[("info", "not json")])), None);
    }

    #[test]
    fn cgroup_paths_of_each_driver() {
        let id = "4f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
        let cgroupfs = format!("12:pids:/kubepods/besteffort/pod1234/{id}\n0::/\n");
        let systemd = format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope\n");
        let crio = format!("0::/kubepods.slice/crio-{id}.scope\n");
        for c in [&cgroupfs, &systemd, &crio] {
            assert!(cgroup_names(c, id), "{c}");
            assert!(cgroup_names(c, &id[..12]), "prefix in {c}");
            assert_eq!(full_id_in(c, &id[..12]).as_deref(), Some(id));
        }
        assert!(!cgroup_names("0::/user.slice/session-3.scope\n", id));
        assert!(!cgroup_names(&cgroupfs, "ffff"));
        // A pod UID's last group is hex, but not a container ID.
        let pod = "12:pids:/kubepods/besteffort/pod8e2f1a3b-1c2d-4e5f-9a8b-0123456789ab\n";
        assert!(!cgroup_names(pod, "0123"), "{pod}");
        let systemd_pod =
            "0::/kubepods.slice/kubepods-besteffort-pod8e2f1a3b_1c2d_4e5f_9a8b_0123456789ab.slice\n";
        assert!(!cgroup_names(systemd_pod, "0123"));
        // A cgroup a container made under its own, named after another
        // container, is still the first container's.
        let other = "ab".repeat(32);
        let nested = format!("0::/kubepods/besteffort/pod1234/{id}/{other}\n");
        assert!(!cgroup_names(&nested, &other[..12]), "{nested}");
        assert_eq!(full_id_in(&nested, &id[..12]).as_deref(), Some(id));
    }

    #[test]
    fn pod_identity_from_kubelet_labels_else_sandbox_metadata() {
        let sandbox = kns_proto::cri::PodSandboxMetadata {
            name: "web-1".into(),
            uid: "u-1".into(),
            namespace: "prod".into(),
            attempt: 0,
        };
        let sandboxes = HashMap::from([("sb".to_owned(), sandbox)]);
        let container = |labels: &[(&str, &str)]| kns_proto::cri::Container {
            id: "c1".into(),
            pod_sandbox_id: "sb".into(),
            metadata: Some(kns_proto::cri::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            labels: info(labels),
            ..Default::default()
        };
        let l = listed(container(&[]), &sandboxes);
        assert_eq!(
            (
                l.name.as_str(),
                l.pod_name.as_str(),
                l.pod_namespace.as_str(),
                l.pod_uid.as_str()
            ),
            ("app", "web-1", "prod", "u-1")
        );
        let l = listed(
            container(&[
                (POD_NAME_LABEL, "static-etcd-n1"),
                (POD_NAMESPACE_LABEL, "kube-system"),
                (POD_UID_LABEL, "hash"),
                (CONTAINER_NAME_LABEL, "etcd"),
            ]),
            &HashMap::new(),
        );
        assert_eq!(
            (
                l.name.as_str(),
                l.pod_name.as_str(),
                l.pod_namespace.as_str(),
                l.pod_uid.as_str()
            ),
            ("etcd", "static-etcd-n1", "kube-system", "hash")
        );
    }

    #[test]
    fn container_ids_are_hex_of_a_sane_length() {
        assert!(check_id("4f1e").is_ok());
        assert!(check_id(&"a".repeat(64)).is_ok());
        for bad in ["../../etc", "4f1e/x", "abc", "", "xyz123", &"a".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_id("abc").unwrap_err().contains("too short"));
        assert!(check_id("a/b/c/d").unwrap_err().contains("hex digits"));
    }

    /// Hostile runtime answers, kept as a fixed corpus: each must give a
    /// clean "no pid" or a positive one, never a panic.
    const HOSTILE_INFO: &[&str] = &[
        r#"{"pid":-1}"#,
        r#"{"pid":2147483648}"#,
        r#"{"pid":1e400}"#,
        r#"{"pid":"  42  "}"#,
        r#"{"pid":[1]}"#,
        r#"{"pid":{"pid":1}}"#,
        r#"{"pid":null}"#,
        r#"[{"pid":1}]"#,
        r#""pid""#,
        "{\"pid\":\0}",
        r#"{"pid":1,"pid":2}"#,
        "\u{feff}{\"pid\":7}",
        "",
    ];

    #[test]
    fn hostile_info_documents_never_panic() {
        for doc in HOSTILE_INFO {
            for key in ["info", "pid"] {
                let got = pid_from_info(&info(&[(key, doc)]));
                assert!(got.is_none_or(|p| p > 0), "{key}={doc:?} gave {got:?}");
                let _ = identity_from_info(&info(&[(key, doc)]));
            }
        }
        assert_eq!(pid_from_info(&info(&[("info", r#"{"pid":"  42  "}"#)])), Some(42));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn any_info_map_gives_a_positive_pid_or_none(
            m in proptest::collection::hash_map("(info|pid|[a-z]{0,5})", "\\PC{0,40}", 0..4),
        ) {
            proptest::prop_assert!(pid_from_info(&m).is_none_or(|p| p > 0));
        }

        #[test]
        fn any_pid_value_in_a_json_document(v in proptest::prelude::any::<i64>(), quoted: bool) {
            let doc = if quoted { format!(r#"{{"pid":"{v}"}}"#) } else { format!(r#"{{"pid":{v}}}"#) };
            let want = (v > 0).then_some(v).and_then(|v| i32::try_from(v).ok());
            proptest::prop_assert_eq!(pid_from_info(&info(&[("info", &doc)])), want);
        }

        #[test]
        fn a_cgroup_match_is_always_a_full_id_with_the_prefix(
            cgroup in "([0-9]{1,2}:[a-z,=]{0,12}:(/[-_.a-z0-9]{0,70}){0,5}\n){0,4}",
            id in "[0-9a-f]{0,8}",
        ) {
            if let Some(full) = full_id_in(&cgroup, &id) {
                proptest::prop_assert_eq!(full.len(), FULL_ID_LEN);
                proptest::prop_assert!(full.starts_with(&id));
                proptest::prop_assert!(full.chars().all(|c| c.is_ascii_hexdigit()));
            }
        }
    }
}
