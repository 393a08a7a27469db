//! What `kubectl-ns` can point at in direct mode: `pid/PID`,
//! `container/ID`, or `node`.

use std::str::FromStr;

use kns_proto::agent::target::Kind;

/// A target as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectTarget {
    Pid(i32),
    Container(String),
    Node,
}

impl FromStr for DirectTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "expected pid/PID, container/ID or node";
        match s.split_once('/') {
            None if s == "node" => Ok(DirectTarget::Node),
            Some(("pid", p)) => match p.parse::<i32>() {
                Ok(p) if p > 0 => Ok(DirectTarget::Pid(p)),
                _ => Err(format!("`{s}`: `{p}` is not a PID (a positive number); {hint}")),
            },
            Some(("container", id)) => {
                let id = id.strip_prefix("containerd://").unwrap_or(id);
                let id = id.strip_prefix("cri-o://").unwrap_or(id);
                if id.is_empty()
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    Err(format!("`{s}`: `{id}` is not a container ID; {hint}"))
                } else {
                    Ok(DirectTarget::Container(id.to_owned()))
                }
            }
            _ => Err(format!("`{s}`: {hint}")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!("pid/42".parse(), Ok(DirectTarget::Pid(42)));
        assert_eq!("node".parse(), Ok(DirectTarget::Node));
        assert_eq!(
            "container/abc123".parse(),
            Ok(DirectTarget::Container("abc123".into()))
        );
        assert_eq!(
            "container/containerd://abc123".parse(),
            Ok(DirectTarget::Container("abc123".into()))
        );
        for bad in [
            "pid/x",
            "pid/0",
            "pid/-3",
            "container/",
            "container/a b",
            "mypod",
            "pod/x",
        ] {
            let e = bad.parse::<DirectTarget>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
