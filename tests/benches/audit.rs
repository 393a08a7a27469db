//! `kubectl ns audit` at scale, each figure next to a baseline measured in
//! the same run:
//! - the plugin's merge (`findings::audit`) of 5,000 pods over 100
//!   simulated nodes' List answers, against decoding the same 5,000 pods'
//!   PodList JSON (work the plugin does anyway to list them); with the
//!   process's peak RSS growth;
//! - the agent's List with 200 running containers on a real containerd,
//!   against one bare CRI ListContainers (the floor) and the per-container
//!   way (ListContainers, then a verbose ContainerStatus per container for
//!   its PID).
//!
//! Run as root: `cargo bench -p kns-tests --bench audit` after
//! `cargo build --release --workspace --bins`; `KNS_BENCH_CONTAINERS=N`
//! changes the 200. Prints Markdown for docs/BENCHMARKS.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kns_plugin::report::findings::{self, Observations, Unknowns};
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::{ContainerInfo, ListRequest, ListResponse, Namespace, NamespaceId, ProcessInfo};
use kns_proto::cri::runtime_service_client::RuntimeServiceClient;
use kns_proto::cri::{ContainerStatusRequest, ListContainersRequest};
use kns_tests::agent::Agent;
use kns_tests::containerd::{Lab, PodSpec, channel};
use kns_tests::kubeapi::running_pod;
use kns_tests::require_root;

const NODES: usize = 100;
const PODS_PER_NODE: usize = 50;
const ROUNDS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn process(pid: i32, base: u64, host: &[Namespace]) -> ProcessInfo {
    ProcessInfo {
        pid,
        nspid: vec![pid],
        namespaces: Namespace::ALL
            .iter()
            .map(|k| NamespaceId {
                kind: *k as i32,
                inode: if host.contains(k) {
                    *k as u64
                } else {
                    base + *k as u64
                },
                device: 4,
            })
            .collect(),
    }
}

/// 5,000 pods over 100 nodes, one in ten hostNetwork (and so observed),
/// with each node's List answer.
fn simulated() -> (Vec<Pod>, Observations) {
    let mut pods = Vec::new();
    let mut observed: Observations = BTreeMap::new();
    for n in 0..NODES {
        let node = format!("node-{n}");
        let mut containers = Vec::new();
        for p in 0..PODS_PER_NODE {
            let (name, id) = (format!("pod-{n}-{p}"), format!("{n:032x}{p:032x}"));
            let mut pod = running_pod("default", &name, &node, &[("app", &id)]);
            let host_net = p % 10 == 0;
            if let Some(s) = pod.spec.as_mut() {
                s.host_network = Some(host_net);
            }
            pods.push(pod);
            let host: &[Namespace] = if host_net {
                &[Namespace::Net, Namespace::Uts, Namespace::User]
            } else {
                &[Namespace::User]
            };
            containers.push(ContainerInfo {
                id,
                name: "app".into(),
                pod_name: name.clone(),
                pod_namespace: "default".into(),
                pod_uid: format!("{name}-uid"),
                process: Some(process(1000 + p as i32, 1_000_000 * (p as u64 + 1), host)),
                ..Default::default()
            });
        }
        observed.insert(
            node,
            Ok(ListResponse {
                node: Some(process(1, 0, &Namespace::ALL)),
                containers,
                ..Default::default()
            }),
        );
    }
    (pods, observed)
}

fn merge_bench() {
    let rss_before = peak_rss_kib();
    let (pods, observed) = simulated();
    let list_json = serde_json::to_vec(&serde_json::json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods,
    }))
    .expect("json");
    let (mut merge, mut decode, mut found) = (Vec::new(), Vec::new(), 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let list: serde_json::Value = serde_json::from_slice(&list_json).expect("decode");
        let decoded: Vec<Pod> = serde_json::from_value(list["items"].clone()).expect("pods");
        decode.push(t.elapsed());
        let t = Instant::now();
        let f = findings::audit(&decoded, &observed, &Unknowns::All);
        merge.push(t.elapsed());
        found = f.len();
    }
    let rss = peak_rss_kib().saturating_sub(rss_before);
    println!(
        "| plugin merge, {} pods over {NODES} nodes ({found} findings) | {} | decoding their PodList JSON: {} | < 2 s | peak RSS growth {:.1} MiB (inputs included) |",
        pods.len(),
        ms(median(merge)),
        ms(median(decode)),
        rss as f64 / 1024.0
    );
}

fn agent_bench(containers: usize) {
    let lab = Lab::start_temp().expect("containerd lab");
    let t = Instant::now();
    for i in 0..containers {
        lab.run_pod(&PodSpec {
            name: format!("bench-{i}"),
            command: vec!["/bin/sleep".into(), "3600".into()],
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("pod {i}: {e:#}"));
    }
    eprintln!("{containers} pods started in {:.1}s", t.elapsed().as_secs_f64());
    let agent = Agent::start(Some(lab.socket.to_str().expect("utf-8 path")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (list, bare, per_container) = rt.block_on(async {
        let mut client = AgentClient::new(channel(&agent.socket)).max_decoding_message_size(64 << 20);
        let mut cri = RuntimeServiceClient::new(channel(&lab.socket));
        let (mut list, mut bare, mut per) = (Vec::new(), Vec::new(), Vec::new());
        // The first round warms connections and caches; all are timed
        // alternately so load changes hit every column alike.
        for round in 0..=ROUNDS {
            let t = Instant::now();
            let answer = client
                .list(ListRequest::default())
                .await
                .expect("List")
                .into_inner();
            let d_list = t.elapsed();
            let seen = answer.containers.iter().filter(|c| c.process.is_some()).count();
            assert_eq!(seen, containers, "every container has its namespaces");
            let t = Instant::now();
            let ids: Vec<String> = cri
                .list_containers(ListContainersRequest::default())
                .await
                .expect("ListContainers")
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            let d_bare = t.elapsed();
            for id in ids {
                cri.container_status(ContainerStatusRequest {
                    container_id: id,
                    verbose: true,
                })
                .await
                .expect("ContainerStatus");
            }
            let d_per = t.elapsed();
            if round > 0 {
                list.push(d_list);
                bare.push(d_bare);
                per.push(d_per);
            }
        }
        (median(list), median(bare), median(per))
    });
    println!(
        "| agent List, {containers} running containers (real containerd) | {} | one CRI ListContainers: {}; ListContainers + {containers} verbose ContainerStatus: {} | < 100 ms | |",
        ms(list),
        ms(bare),
        ms(per_container)
    );
    drop(agent);
}

fn main() {
    require_root();
    let containers: usize = std::env::var("KNS_BENCH_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!("| what | median of {ROUNDS} | baseline, same run | goal | notes |");
    println!("|---|---|---|---|---|");
    merge_bench();
    agent_bench(containers);
}
