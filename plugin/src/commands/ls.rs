//! `kubectl ns ls`: namespace identities next to the node's, and for a pod,
//! next to each other: compare first, enter second. For `node/NODE`, every
//! namespace on the node and the containers in it (see `inventory`).

use crate::agent::transport::AgentChannel;
use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::{InspectRequest, InspectResponse, ListRequest, Namespace, ProcessInfo};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::agent::fanout;
use crate::agent::route::{self, Route};
use crate::agent::transport;
use crate::cli::target::{DirectTarget, Target};
use crate::cli::{LsArgs, Output};
use crate::error::{self, Failure, LocalError, UsageError};
use crate::kube::resolve;
use crate::kube::resolve::KubeTarget;
use crate::report::inventory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    /// The node's own (PID 1's) namespace.
    Host,
    /// Shared with another container of the same pod.
    Pod,
    Private,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Host => "host",
            Verdict::Pod => "pod",
            Verdict::Private => "private",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct NsId {
    inode: u64,
    device: u64,
}

#[derive(Debug, Serialize)]
struct NsRow {
    kind: &'static str,
    target: Option<NsId>,
    node: Option<NsId>,
    verdict: Verdict,
}

#[derive(Debug, Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    target: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    container_id: String,
    pid: i32,
    nspid: Vec<i32>,
    node_pid: i32,
    namespaces: Vec<NsRow>,
    uid_map: String,
    gid_map: String,
    cgroup: String,
    timens_offsets: String,
}

#[derive(Debug, Serialize)]
struct PodReport {
    pod: String,
    node: String,
    containers: Vec<Report>,
}

fn find(p: &ProcessInfo, k: Namespace) -> Option<NsId> {
    p.namespace(k).map(|n| NsId {
        inode: n.inode,
        device: n.device,
    })
}

fn report(target: String, container: Option<String>, r: InspectResponse) -> Report {
    let t = r.target.unwrap_or_default();
    let n = r.node.unwrap_or_default();
    let namespaces = Namespace::ALL
        .into_iter()
        .map(|k| {
            let (target, node) = (find(&t, k), find(&n, k));
            let verdict = if target.is_some() && target == node {
                Verdict::Host
            } else {
                Verdict::Private
            };
            NsRow {
                kind: k.proc_name(),
                target,
                node,
                verdict,
            }
        })
        .filter(|r| r.target.is_some() || r.node.is_some())
        .collect();
    Report {
        container,
        target,
        container_id: r.container_id,
        pid: t.pid,
        nspid: t.nspid,
        node_pid: n.pid,
        namespaces,
        uid_map: r.uid_map,
        gid_map: r.gid_map,
        cgroup: r.cgroup,
        timens_offsets: r.timens_offsets,
    }
}

/// Marks as `pod` the private namespaces that another container of the
/// same pod shares.
fn mark_shared(reports: &mut [Report]) {
    let ids: Vec<Vec<Option<NsId>>> = reports
        .iter()
        .map(|r| r.namespaces.iter().map(|n| n.target.clone()).collect())
        .collect();
    for (i, r) in reports.iter_mut().enumerate() {
        for (k, row) in r.namespaces.iter_mut().enumerate() {
            let shared = ids
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && row.target.is_some() && other.get(k) == Some(&row.target));
            if row.verdict == Verdict::Private && shared {
                row.verdict = Verdict::Pod;
            }
        }
    }
}

fn one_line(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ino(i: &Option<NsId>) -> String {
    i.as_ref().map_or("-".to_owned(), |i| i.inode.to_string())
}

/// One target's namespaces next to the node's. Wide adds what else the
/// agent reported: the node reference's PID, each namespace's device, the
/// cgroup and the time namespace's offsets.
fn table(r: &Report, wide: bool) -> String {
    let nspid: Vec<String> = r.nspid.iter().map(i32::to_string).collect();
    let mut s = format!("TARGET {}  PID {}  NSpid {}", r.target, r.pid, nspid.join(" "));
    if !r.container_id.is_empty() {
        s.push_str(&format!("  container {}", r.container_id));
    }
    if wide {
        s.push_str(&format!("  node reference PID {}", r.node_pid));
    }
    let dev = |i: &Option<NsId>| {
        i.as_ref().map_or("-".to_owned(), |i| {
            format!(
                "{}:{}",
                nix::sys::stat::major(i.device),
                nix::sys::stat::minor(i.device)
            )
        })
    };
    let line = |cells: [&str; 4], devices: Option<[String; 2]>| {
        let [kind, target, node, shared] = cells;
        match devices {
            Some([t, n]) => format!("{kind:<8} {target:<12} {node:<12} {shared:<8} {t:<12} {n}\n"),
            None => format!("{kind:<8} {target:<12} {node:<12} {shared}\n"),
        }
    };
    s.push_str("\n\n");
    s.push_str(&line(
        ["NS", "TARGET", "NODE", "SHARED"],
        wide.then(|| ["TARGET_DEV".into(), "NODE_DEV".into()]),
    ));
    for row in &r.namespaces {
        s.push_str(&line(
            [row.kind, &ino(&row.target), &ino(&row.node), row.verdict.as_str()],
            wide.then(|| [dev(&row.target), dev(&row.node)]),
        ));
    }
    s.push_str(&format!(
        "\nuid_map: {}\ngid_map: {}\n",
        one_line(&r.uid_map),
        one_line(&r.gid_map)
    ));
    if wide {
        for (name, text) in [("cgroup", &r.cgroup), ("timens_offsets", &r.timens_offsets)] {
            s.push_str(&format!("{name}:\n"));
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                s.push_str(&format!("  {}\n", one_line(line)));
            }
        }
    }
    s
}

/// The namespace columns' headers, and one container's cells.
fn ns_header(wide: bool) -> String {
    Namespace::ALL
        .into_iter()
        .map(|k| {
            format!(
                " {:<w$}",
                k.proc_name().to_uppercase(),
                w = if wide { 19 } else { 8 }
            )
        })
        .collect()
}

fn ns_cells(c: &Report, wide: bool) -> String {
    Namespace::ALL
        .into_iter()
        .map(|k| {
            let cell = c
                .namespaces
                .iter()
                .find(|n| n.kind == k.proc_name())
                .map_or("-".to_owned(), |n| {
                    if wide {
                        format!("{}:{}", n.verdict.as_str(), ino(&n.target))
                    } else {
                        n.verdict.as_str().to_owned()
                    }
                });
            format!(" {:<w$}", cell, w = if wide { 19 } else { 8 })
        })
        .collect()
}

fn pod_table(p: &PodReport, wide: bool) -> String {
    let mut s = format!(
        "POD {}  NODE {}\n\n{:<16} {:<8}{}\n",
        p.pod,
        p.node,
        "CONTAINER",
        "PID",
        ns_header(wide)
    );
    for c in &p.containers {
        s.push_str(&format!(
            "{:<16} {:<8}{}\n",
            c.container.as_deref().unwrap_or(""),
            c.pid,
            ns_cells(c, wide)
        ));
    }
    s
}

/// Many pods' containers, one row each, with their pod and node.
fn pods_table(pods: &[PodReport], wide: bool) -> String {
    let pod_w = pods.iter().map(|p| p.pod.len()).max().unwrap_or(0).max(3);
    let node_w = pods.iter().map(|p| p.node.len()).max().unwrap_or(0).max(4);
    let mut s = format!(
        "{:<pod_w$} {:<node_w$} {:<16} {:<8}{}\n",
        "POD",
        "NODE",
        "CONTAINER",
        "PID",
        ns_header(wide)
    );
    for p in pods {
        for c in &p.containers {
            s.push_str(&format!(
                "{:<pod_w$} {:<node_w$} {:<16} {:<8}{}\n",
                p.pod,
                p.node,
                c.container.as_deref().unwrap_or(""),
                c.pid,
                ns_cells(c, wide)
            ));
        }
    }
    s
}

/// `ls` without a target: every pod in scope, its containers' namespaces
/// from its node's agent List (the nodes asked at once, as by `audit`).
/// Exits 255 when some node could not be asked, after printing the rest.
async fn many(args: &LsArgs) -> Result<u8, Failure> {
    let route = Route::of(&args.kube);
    if route.direct().is_some() {
        return Err(UsageError::ListWithoutTarget.into());
    }
    let r = route::resolver(&args.kube).await?;
    let scope = fanout::Scope::of(&args.fanout, None);
    let pods = fanout::pods(&r, &scope).await?;
    let observed = fanout::list_nodes(
        &route,
        &r,
        fanout::nodes(&pods, &scope),
        fanout::Bounds::of(&args.fanout),
        false,
    )
    .await?;
    let mut out = Vec::new();
    for pod in &pods {
        let Ok(running) = resolve::pod_containers(pod) else {
            continue;
        };
        let Some(Ok(list)) = observed.get(&running.node) else {
            continue;
        };
        let mut reports = Vec::new();
        for (cname, id) in &running.running {
            let Some(c) = list.containers.iter().find(|c| &c.id == id) else {
                eprintln!(
                    "kubectl-ns: {}/{} ({cname}): not in the runtime's list on node {}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    running.node
                );
                continue;
            };
            let inspected = InspectResponse {
                target: c.process.clone(),
                node: list.node.clone(),
                container_id: id.clone(),
                ..Default::default()
            };
            reports.push(report(
                DirectTarget::Container(id.clone()).to_string(),
                Some(cname.clone()),
                inspected,
            ));
        }
        mark_shared(&mut reports);
        out.push(PodReport {
            pod: format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ),
            node: running.node,
            containers: reports,
        });
    }
    let missing: Vec<_> = observed
        .iter()
        .filter_map(|(n, o)| Some((n, o.as_ref().err()?)))
        .collect();
    for (node, why) in &missing {
        eprintln!("kubectl-ns: node {node} not observed: {why}");
    }
    print!("{}", render(&out, args.output, |wide| pods_table(&out, wide))?);
    Ok(if missing.is_empty() { 0 } else { error::FAILURE })
}

async fn inspect(
    client: &mut AgentClient<AgentChannel>,
    target: kns_proto::agent::Target,
) -> Result<InspectResponse, Failure> {
    crate::timings::grpc_call();
    let r = crate::agent::deadline::answered(async {
        client
            .inspect(InspectRequest { target: Some(target) })
            .await
            .map_err(|s| error::status_failure(&s))
    })
    .await?;
    transport::warn_version_skew(r.metadata());
    Ok(r.into_inner())
}

pub(crate) fn render<T: Serialize>(
    v: &T,
    output: Output,
    table: impl FnOnce(bool) -> String,
) -> Result<String, Failure> {
    match output {
        Output::Table => Ok(table(false)),
        Output::Wide => Ok(table(true)),
        Output::Json => serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| LocalError::from(e).into()),
        Output::Yaml => yaml_serde::to_string(v).map_err(|e| LocalError::from(e).into()),
    }
}

pub async fn run(args: LsArgs) -> Result<u8, Failure> {
    let Some(target) = &args.target else {
        return many(&args).await;
    };
    if args.fanout.all_namespaces || args.fanout.selector.is_some() {
        return Err(UsageError::ListTargetAndMany.into());
    }
    route::namespace_applies(&args.kube, target)?;
    let text = match target {
        Target::Kube(KubeTarget::Pod { namespace, name }) => {
            let (channel, containers) = route::reach_pod(&args.kube, namespace.as_deref(), name).await?;
            let mut client = AgentClient::new(channel);
            let mut reports = Vec::new();
            for (cname, id) in &containers.running {
                let t = DirectTarget::Container(id.clone());
                let r = inspect(&mut client, t.to_proto()).await?;
                reports.push(report(t.to_string(), Some(cname.clone()), r));
            }
            mark_shared(&mut reports);
            let p = PodReport {
                pod: match namespace {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.clone(),
                },
                node: containers.node,
                containers: reports,
            };
            render(&p, args.output, |wide| pod_table(&p, wide))?
        }
        Target::Kube(KubeTarget::Node(node)) => {
            let reached = route::reach(&args.kube, target, None).await?;
            let r = route::resolver(&args.kube).await?;
            let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
            let api = Api::<Pod>::all(r.client);
            let (pods, listed) = tokio::join!(api.list(&on_node), async {
                crate::timings::grpc_call();
                AgentClient::new(reached.channel)
                    .list(ListRequest { namespaces: true })
                    .await
                    .map_err(|s| error::status_failure(&s))
            });
            let pods =
                pods.map_err(|e| error::api_failure(&format!("cannot list the pods on node {node}"), e))?;
            let listed = listed?;
            transport::warn_version_skew(listed.metadata());
            let inv = inventory::inventory(node, listed.get_ref(), &pods.items);
            render(&inv, args.output, |_| inventory::table(&inv))?
        }
        other => {
            let reached = route::reach(&args.kube, other, None).await?;
            let mut client = AgentClient::new(reached.channel);
            let r = report(reached.label, None, inspect(&mut client, reached.target).await?);
            render(&r, args.output, |wide| table(&r, wide))?
        }
    };
    print!("{text}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::findings::tests::process as info;

    /// `-o yaml` is read by scripts: its quoting and layout stay as they
    /// are, whichever YAML crate writes it.
    #[test]
    fn yaml_output_is_pinned() {
        let v = serde_json::json!({
            "node": "worker-1",
            "containers": [
                {"name": "app", "pid": 4242, "shared": true, "image": null},
                {"name": "", "pid": 7, "shared": false, "image": "reg:5000/a:1.0"},
            ],
            "words": ["yes", "no", "1.0", "0x1f", "~", "a: b", "#x", "two\nlines", " pad"],
            "empty": {},
            "none": [],
        });
        let got = render(&v, Output::Yaml, |_| unreachable!()).map_err(|e| e.to_string());
        assert_eq!(
            got.as_deref(),
            Ok(
                "containers:\n- image: null\n  name: app\n  pid: 4242\n  shared: true\n- image: reg:5000/a:1.0\n  \
                name: ''\n  pid: 7\n  shared: false\nempty: {}\nnode: worker-1\nnone: []\nwords:\n- yes\n- no\n- \
                '1.0'\n- '0x1f'\n- '~'\n- 'a: b'\n- '#x'\n- |-\n  two\n  lines\n- ' pad'\n"
            )
        );
    }

    fn inspected(pid: i32, net: u64, uts: u64) -> InspectResponse {
        InspectResponse {
            target: Some(info(pid, &[(Namespace::Net, net), (Namespace::Uts, uts)])),
            node: Some(info(1, &[(Namespace::Net, 1), (Namespace::Uts, 5)])),
            ..Default::default()
        }
    }

    #[test]
    fn verdict_compares_inode_and_device() {
        let r = report("pid/7".into(), None, inspected(7, 100, 5));
        let t = table(&r, false);
        assert!(t.contains("net      100          1            private\n"), "{t}");
        assert!(t.contains("uts      5            5            host\n"), "{t}");
        let mut r = r;
        r.cgroup = "0::/kubepods/x\n".into();
        let w = table(&r, true);
        assert!(w.contains("node reference PID 1"), "{w}");
        assert!(
            w.contains("net      100          1            private  0:4          0:4\n"),
            "{w}"
        );
        assert!(w.contains("cgroup:\n  0::/kubepods/x\n"), "{w}");
        assert!(!table(&r, false).contains("cgroup"));
    }

    #[test]
    fn containers_sharing_a_namespace_are_marked_pod() {
        let mut reports = vec![
            report("a".into(), Some("app".into()), inspected(7, 100, 200)),
            report("b".into(), Some("side".into()), inspected(8, 100, 5)),
        ];
        mark_shared(&mut reports);
        let verdict = |r: &Report, k| r.namespaces.iter().find(|n| n.kind == k).unwrap().verdict;
        assert_eq!(verdict(&reports[0], "net"), Verdict::Pod);
        assert_eq!(verdict(&reports[0], "uts"), Verdict::Private);
        assert_eq!(verdict(&reports[1], "uts"), Verdict::Host);
        let p = PodReport {
            pod: "web".into(),
            node: "n".into(),
            containers: reports,
        };
        let t = pod_table(&p, false);
        assert!(
            t.contains("app              7        -        private  -        pod"),
            "{t}"
        );
        assert!(pod_table(&p, true).contains("pod:100"));
    }
}
