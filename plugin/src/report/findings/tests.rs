//! The audit rules against pods and observations built by hand.

use super::namespaces::COMPARED;
use super::unknown::MIRROR_ANNOTATION;
use super::*;
use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, HostPathVolumeSource, PodSpec, SecurityContext, Volume, VolumeMount,
};
use kns_proto::agent::NamespaceId;

const NODE: &str = "n1";

/// A process with these namespace identities; also for ls's tests.
pub(crate) fn process(pid: i32, ids: &[(Namespace, u64)]) -> ProcessInfo {
    ProcessInfo {
        pid,
        nspid: vec![pid],
        namespaces: ids
            .iter()
            .map(|(k, i)| NamespaceId {
                kind: *k as i32,
                inode: *i,
                device: 4,
            })
            .collect(),
    }
}

/// The node: inode 1 for every compared kind.
fn node() -> ProcessInfo {
    process(1, &COMPARED.map(|k| (k, 1)))
}

/// A container whose kinds in `host` are the node's, the others its own.
fn seen(id: &str, pod: &str, uid: &str, host: &[Namespace]) -> ContainerInfo {
    let ids: Vec<(Namespace, u64)> = COMPARED
        .iter()
        .map(|k| (*k, if host.contains(k) { 1 } else { 100 + *k as u64 }))
        .collect();
    ContainerInfo {
        id: id.into(),
        name: "app".into(),
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        pod_uid: uid.into(),
        process: Some(process(7, &ids)),
        ..Default::default()
    }
}

fn listed(containers: Vec<ContainerInfo>) -> Observations {
    BTreeMap::from([(
        NODE.to_owned(),
        Ok(ListResponse {
            node: Some(node()),
            containers,
            ..Default::default()
        }),
    )])
}

fn pod(name: &str, id: &str, spec: PodSpec) -> Pod {
    let mut p = crate::running_pod("default", name, NODE, id);
    let containers = p.spec.take().unwrap_or_default().containers;
    p.spec = Some(PodSpec {
        node_name: Some(NODE.into()),
        containers,
        ..spec
    });
    p
}

fn kinds(f: &[Finding]) -> Vec<(Kind, &str, Option<bool>, Option<bool>)> {
    f.iter()
        .map(|f| (f.kind, f.detail.as_str(), f.declared, f.observed))
        .collect()
}

#[test]
fn declared_and_observed_host_network_agree() {
    let spec = PodSpec {
        host_network: Some(true),
        ..Default::default()
    };
    let obs = listed(vec![seen(
        "c1",
        "web",
        "web-uid",
        &[Namespace::Net, Namespace::Uts, Namespace::User],
    )]);
    let f = audit(&[pod("web", "c1", spec)], &obs, &Unknowns::All);
    assert_eq!(kinds(&f), vec![(Kind::HostNet, "", Some(true), Some(true))]);
    assert_eq!(f[0].severity, Severity::High);
}

#[test]
fn a_process_in_the_nodes_network_namespace_against_the_spec_is_drift() {
    let obs = listed(vec![seen(
        "c1",
        "web",
        "web-uid",
        &[Namespace::Net, Namespace::User],
    )]);
    let f = audit(&[pod("web", "c1", PodSpec::default())], &obs, &Unknowns::All);
    assert_eq!(
        kinds(&f),
        vec![
            (Kind::HostNet, "", Some(false), Some(true)),
            (Kind::Drift, "net", Some(false), Some(true)),
        ]
    );
    assert_eq!(f[1].severity, Severity::Critical);
}

#[test]
fn a_runtime_that_ignored_host_network_is_drift() {
    let spec = PodSpec {
        host_network: Some(true),
        ..Default::default()
    };
    let obs = listed(vec![seen("c1", "web", "web-uid", &[Namespace::User])]);
    let f = audit(&[pod("web", "c1", spec)], &obs, &Unknowns::All);
    assert_eq!(
        kinds(&f),
        vec![
            (Kind::HostNet, "", Some(true), Some(false)),
            (Kind::Drift, "net", Some(true), Some(false)),
            (Kind::Drift, "uts", Some(true), Some(false)),
        ]
    );
    assert_eq!(f[1].severity, Severity::High);
}

#[test]
fn pods_on_nodes_without_an_agent_are_not_observed_never_clean() {
    let obs = BTreeMap::from([(NODE.to_owned(), Err("no agent".to_owned()))]);
    let spec = PodSpec {
        host_pid: Some(true),
        ..Default::default()
    };
    let f = audit(&[pod("web", "c1", spec)], &obs, &Unknowns::All);
    assert_eq!(
        kinds(&f),
        vec![
            (Kind::NotObserved, "no agent", None, None),
            (Kind::HostPid, "", Some(true), None),
        ]
    );
    let f = audit(
        &[pod("web", "c1", PodSpec::default())],
        &BTreeMap::new(),
        &Unknowns::All,
    );
    assert_eq!(
        kinds(&f),
        vec![(Kind::NotObserved, "the node was not asked", None, None)]
    );
    // A container the API says runs but the runtime does not list.
    let f = audit(
        &[pod("web", "c1", PodSpec::default())],
        &listed(vec![]),
        &Unknowns::All,
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, Kind::NotObserved);
    assert_eq!(f[0].container, "app");
}

#[test]
fn containers_no_pod_owns_are_unknown_but_static_pods_are_named() {
    let obs = listed(vec![
        seen("c1", "web", "web-uid", &[Namespace::User]),
        seen("c2", "miner", "x-uid", &[Namespace::Net, Namespace::User]),
        seen("c3", "etcd-n1", "static-hash", &[Namespace::Net, Namespace::User]),
    ]);
    let mut mirror = pod(
        "etcd-n1",
        "other",
        PodSpec {
            host_network: Some(true),
            ..Default::default()
        },
    );
    mirror.metadata.uid = Some("mirror-uid".into());
    mirror.metadata.annotations = Some(crate::label_map(&[(MIRROR_ANNOTATION, "static-hash")]));
    let pods = [pod("web", "c1", PodSpec::default()), mirror];
    let f = audit(&pods, &obs, &Unknowns::All);
    let unknown: Vec<_> = f.iter().filter(|f| f.kind == Kind::UnknownWorkload).collect();
    assert_eq!(unknown.len(), 1, "{f:#?}");
    assert_eq!(unknown[0].pod, "miner");
    assert_eq!(unknown[0].detail, "in the node's net");
    assert!(
        audit(&pods, &obs, &Unknowns::Namespace("kube-system".into()))
            .iter()
            .all(|f| f.kind != Kind::UnknownWorkload)
    );
    assert!(
        audit(&pods, &obs, &Unknowns::Off)
            .iter()
            .all(|f| f.kind != Kind::UnknownWorkload)
    );
}

#[test]
fn declared_risks_of_a_container_spec() {
    let mut p = pod(
        "web",
        "c1",
        PodSpec {
            share_process_namespace: Some(true),
            host_users: Some(false),
            host_ipc: Some(true),
            volumes: Some(
                ["/", "/var/run/", "/proc", "/data"]
                    .iter()
                    .enumerate()
                    .map(|(i, path)| Volume {
                        name: format!("v{i}"),
                        host_path: Some(HostPathVolumeSource {
                            path: (*path).into(),
                            type_: None,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        },
    );
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        capabilities: Some(Capabilities {
            add: Some(vec!["CAP_SYS_ADMIN".into(), "net_raw".into(), "CHOWN".into()]),
            drop: None,
        }),
        ..Default::default()
    });
    c.ports = Some(vec![ContainerPort {
        container_port: 80,
        host_port: Some(8080),
        ..Default::default()
    }]);
    c.volume_mounts = Some(
        (0..4)
            .map(|i| VolumeMount {
                name: format!("v{i}"),
                mount_path: format!("/m{i}"),
                ..Default::default()
            })
            .collect(),
    );
    // The runtime gave it a user namespace and the node's IPC.
    let obs = listed(vec![seen("c1", "web", "web-uid", &[Namespace::Ipc])]);
    let f = audit(&[p], &obs, &Unknowns::All);
    let mut got = kinds(&f);
    got.sort();
    let mut want = vec![
        (Kind::HostIpc, "", Some(true), Some(true)),
        (Kind::UserNs, "", Some(true), Some(true)),
        (Kind::Privileged, "", Some(true), None),
        (Kind::HostPort, "8080/TCP", Some(true), None),
        (Kind::Capability, "NET_RAW", Some(true), None),
        (Kind::Capability, "SYS_ADMIN", Some(true), None),
        (Kind::HostPath, "/", Some(true), None),
        (Kind::HostPath, "/proc", Some(true), None),
        (Kind::HostPath, "/var/run/", Some(true), None),
        (Kind::SharePid, "", Some(true), None),
    ];
    want.sort();
    assert_eq!(got, want);
}
