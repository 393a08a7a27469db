//! What `kubectl-ns` can point at: a pod (`POD`, `pod/POD`, `NS/POD`) or a
//! node (`node/NODE`) through the Kubernetes API, or, with `--agent`,
//! directly `pid/PID`, `container/ID` or `node`.

use std::str::FromStr;

use kns_proto::agent::target::Kind;

use crate::kube::resolve::KubeTarget;

/// A target the agent understands as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectTarget {
    Pid(i32),
    Container(String),
    Node,
}

/// A target as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Direct(DirectTarget),
    Kube(KubeTarget),
}

const FORMS: &str = "expected POD, pod/POD, NS/POD, node/NODE, or with --agent: pid/PID, container/ID, node";

/// Kubernetes object names: lowercase DNS labels and subdomains.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with(['-', '.'])
}

fn name(s: &str, whole: &str, what: &str) -> Result<String, String> {
    if valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{whole}`: `{s}` is not a valid {what} name; {FORMS}"))
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.split_once('/') {
            None if s == "node" => Target::Direct(DirectTarget::Node),
            None => Target::Kube(KubeTarget::Pod {
                namespace: None,
                name: name(s, s, "pod")?,
            }),
            Some(("pid", p)) => match p.parse::<i32>() {
                Ok(p) if p > 0 => Target::Direct(DirectTarget::Pid(p)),
                _ => return Err(format!("`{s}`: `{p}` is not a PID (a positive number); {FORMS}")),
            },
            Some(("container", id)) => {
                let id = crate::kube::resolve::runtime_id(id);
                // As the agent takes them (hex, as `crictl ps` shows, at
                // least 4 digits): a usage error here rather than a refusal there.
                if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "`{s}`: `{id}` is not a container ID (hex digits, as `crictl ps` shows); {FORMS}"
                    ));
                }
                if id.len() < 4 {
                    return Err(format!(
                        "`{s}`: the container ID prefix is too short: give at least 4 hex digits"
                    ));
                }
                Target::Direct(DirectTarget::Container(id.to_owned()))
            }
            Some(("node", n)) => Target::Kube(KubeTarget::Node(name(n, s, "node")?)),
            Some(("pod" | "pods" | "po", p)) => Target::Kube(KubeTarget::Pod {
                namespace: None,
                name: name(p, s, "pod")?,
            }),
            Some((ns, p)) => Target::Kube(KubeTarget::Pod {
                namespace: Some(name(ns, s, "namespace")?),
                name: name(p, s, "pod")?,
            }),
        })
    }
}

impl DirectTarget {
    pub fn to_proto(&self) -> kns_proto::agent::Target {
        let kind = match self {
            DirectTarget::Pid(p) => Kind::Pid(*p),
            DirectTarget::Container(id) => Kind::ContainerId(id.clone()),
            DirectTarget::Node => Kind::Node(kns_proto::agent::Node {}),
        };
        kns_proto::agent::Target { kind: Some(kind) }
    }
}

impl std::fmt::Display for DirectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectTarget::Pid(p) => write!(f, "pid/{p}"),
            DirectTarget::Container(c) => write!(f, "container/{c}"),
            DirectTarget::Node => f.write_str("node"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: Option<&str>, name: &str) -> Target {
        Target::Kube(KubeTarget::Pod {
            namespace: ns.map(String::from),
            name: name.into(),
        })
    }

    #[test]
    fn parses_each_form() {
        assert_eq!("pid/42".parse(), Ok(Target::Direct(DirectTarget::Pid(42))));
        assert_eq!("node".parse(), Ok(Target::Direct(DirectTarget::Node)));
        assert_eq!(
            "container/containerd://abc123".parse(),
            Ok(Target::Direct(DirectTarget::Container("abc123".into())))
        );
        assert_eq!("web-1".parse(), Ok(pod(None, "web-1")));
        assert_eq!("pod/web-1".parse(), Ok(pod(None, "web-1")));
        assert_eq!("prod/web-1".parse(), Ok(pod(Some("prod"), "web-1")));
        assert_eq!(
            "node/worker-3".parse(),
            Ok(Target::Kube(KubeTarget::Node("worker-3".into())))
        );
        for bad in [
            "pid/x",
            "pid/0",
            "container/",
            "container/a b",
            "Web",
            "prod/",
            "a/b/c",
            "node/",
        ] {
            let e = bad.parse::<Target>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
