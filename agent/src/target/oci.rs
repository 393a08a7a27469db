//! Reading the OCI runtime information a runtime's verbose
//! ContainerStatus carries: the container's host PID, and the process
//! identity (user, groups, capabilities, no_new_privs, seccomp) its spec
//! gives the processes it starts.

use std::collections::HashMap;

use crate::sys::{Caps, Creds};
use crate::target::caps::CAP_NAMES;

/// A container's process identity, from the OCI runtime spec the runtime
/// reports: what `crictl exec` gives a process it starts in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub creds: Creds,
    /// The spec's seccomp profile (OCI `linux.seccomp`), if it has one.
    pub seccomp: Option<serde_json::Value>,
}

/// The host PID in a verbose status's `info`.
///
/// containerd (≥ 1.6) and CRI-O (≥ 1.18) put a JSON document under "info"
/// with a numeric "pid"; older CRI-O put "pid" at the top level.
pub fn pid_from_info(info: &HashMap<String, String>) -> Option<i32> {
    let as_pid = |v: &serde_json::Value| -> Option<i32> {
        let n = match v {
            serde_json::Value::Number(n) => n.as_i64()?,
            serde_json::Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        (n > 0).then_some(n).and_then(|n| i32::try_from(n).ok())
    };
    if let Some(doc) = info.get("info")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(doc)
        && let Some(pid) = v.get("pid").and_then(as_pid)
    {
        return Some(pid);
    }
    let top = info.get("pid")?;
    serde_json::from_str::<serde_json::Value>(top)
        .ok()
        .and_then(|v| as_pid(&v))
        .or_else(|| top.trim().parse().ok().filter(|p| *p > 0))
}

/// The container's process identity in a verbose status's `info`: the OCI
/// spec's `process` (containerd and CRI-O both report `runtimeSpec`).
///
/// Fails closed: without a numeric uid and gid there is no identity (and
/// `-m` is refused); a capability set that is absent is empty, and a
/// capability name this table does not know is left out, never granted.
pub fn identity_from_info(info: &HashMap<String, String>) -> Option<ProcessSpec> {
    let doc: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let spec = doc.get("runtimeSpec")?;
    let process = spec.get("process")?;
    let id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let user = process.get("user")?;
    let groups = match user.get("additionalGids") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => v.as_array()?.iter().map(id).collect::<Option<Vec<u32>>>()?,
    };
    let set = |name: &str| -> u64 {
        process
            .get("capabilities")
            .and_then(|c| c.get(name))
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| CAP_NAMES.iter().position(|c| Some(*c) == n.as_str()))
            .fold(0, |m, bit| m | 1 << bit)
    };
    Some(ProcessSpec {
        creds: Creds {
            uid: id(user.get("uid")?)?,
            gid: id(user.get("gid")?)?,
            groups,
            caps: Caps {
                bounding: set("bounding"),
                effective: set("effective"),
                permitted: set("permitted"),
                inheritable: set("inheritable"),
                ambient: set("ambient"),
            },
            no_new_privs: process
                .get("noNewPrivileges")
                .and_then(serde_json::Value::as_bool)
                == Some(true),
        },
        seccomp: spec
            .get("linux")
            .and_then(|l| l.get("seccomp"))
            .filter(|s| !s.is_null())
            .cloned(),
    })
}
