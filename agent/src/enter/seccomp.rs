//! A container's seccomp profile for a tool run as the container: the OCI
//! `linux.seccomp` object the runtime reports, compiled to the BPF program
//! the kernel loads, with the meaning runc gives each field. Compiled in the
//! agent before the fork, so the child only loads it (`sys`).

use std::io::{Read, Seek};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::Deserialize;

use crate::sys::plan::Filter;

/// seccomp(2) filter flags an OCI profile may ask for.
const FLAG_LOG: u32 = 1 << 1;
const FLAG_SPEC_ALLOW: u32 = 1 << 2;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the container's seccomp profile is not a valid OCI profile: {0}")]
    Shape(#[from] serde_json::Error),
    #[error("the container's seccomp profile uses {0}, which kubectl-ns cannot apply to the tool")]
    Unsupported(String),
    #[error("cannot compile the container's seccomp profile: {0}")]
    Compile(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// The calls that give the tool the container's identity. A profile that
/// makes them return 0 without doing anything (SCMP_ACT_ERRNO with errno
/// 0) would leave the tool with the agent's uid and capabilities, with no
/// error: such a profile is refused.
const IDENTITY_CALLS: &[&str] = &[
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "setuid32",
    "setgid32",
    "setreuid32",
    "setregid32",
    "setresuid32",
    "setresgid32",
    "setfsuid32",
    "setfsgid32",
    "setgroups32",
    "capset",
    "prctl",
];

/// EPERM, what runc returns for SCMP_ACT_ERRNO without an errnoRet.
const EPERM: u32 = 1;

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let ret = |n: Option<u32>| {
        let n = n.unwrap_or(EPERM);
        i32::try_from(n)
            .ok()
            .filter(|n| *n <= i32::from(u16::MAX))
            .ok_or_else(|| SeccompError::Unsupported(format!("errno {n}")))
    };
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(ret(errno)?),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(ret(errno)? as u16),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        // The runtime's agent answers those calls; nobody would answer the
        // tool's, which would hang.
        other => return Err(SeccompError::Unsupported(format!("the action {other}"))),
    })
}

fn compare(a: &Arg) -> Result<ScmpArgCompare, SeccompError> {
    let op = match a.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        // OCI's value is the mask and valueTwo the datum.
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(a.value),
        other => return Err(SeccompError::Unsupported(format!("the comparison {other}"))),
    };
    let datum = if matches!(op, ScmpCompareOp::MaskedEqual(_)) {
        a.value_two
    } else {
        a.value
    };
    Ok(ScmpArgCompare::new(a.index, op, datum))
}

/// Compiles `linux.seccomp` of an OCI runtime spec.
pub fn compile(profile: &serde_json::Value) -> Result<Filter, SeccompError> {
    let p = Profile::deserialize(profile)?;
    if p.listener_path.as_deref().is_some_and(|l| !l.is_empty()) {
        return Err(SeccompError::Unsupported("a seccomp notify listener".into()));
    }
    let failed = |e: libseccomp::error::SeccompError| SeccompError::Compile(e.to_string());
    let default = action(&p.default_action, p.default_errno_ret)?;
    let fakes_success = |a: ScmpAction| a == ScmpAction::Errno(0);
    if fakes_success(default) {
        return Err(SeccompError::Unsupported(
            "a default action that fakes success (SCMP_ACT_ERRNO with errno 0), which would fake the tool's \
             change of identity too"
                .into(),
        ));
    }
    let mut ctx = ScmpFilterContext::new(default).map_err(failed)?;
    for a in &p.architectures {
        let arch: ScmpArch = a
            .parse()
            .map_err(|_| SeccompError::Unsupported(format!("the architecture {a}")))?;
        // The native one is there from the start.
        if arch != ScmpArch::native() {
            ctx.add_arch(arch).map_err(failed)?;
        }
    }
    for rule in &p.syscalls {
        let act = action(&rule.action, rule.errno_ret)?;
        if fakes_success(act)
            && let Some(call) = rule.names.iter().find(|n| IDENTITY_CALLS.contains(&n.as_str()))
        {
            return Err(SeccompError::Unsupported(format!(
                "SCMP_ACT_ERRNO with errno 0 on {call}, which would fake the tool's change of identity"
            )));
        }
        // libseccomp refuses a rule that repeats the default action; it
        // would change nothing anyway.
        if act == default {
            continue;
        }
        let conditions = rule.args.iter().map(compare).collect::<Result<Vec<_>, _>>()?;
        // As runc: conditions on distinct arguments all must hold (one
        // rule); several on the same argument are alternatives (a rule
        // each).
        let mut indexes: Vec<u32> = rule.args.iter().map(|a| a.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let alternatives: Vec<&[ScmpArgCompare]> = if indexes.len() == conditions.len() {
            vec![&conditions[..]]
        } else {
            conditions.chunks(1).collect()
        };
        for name in &rule.names {
            // A name this libseccomp or architecture does not know is left
            // out, as runc does: the profile may be newer than the node.
            let Ok(call) = ScmpSyscall::from_name(name) else {
                continue;
            };
            for c in &alternatives {
                ctx.add_rule_conditional(act, call, c).map_err(failed)?;
            }
        }
    }
    let mut flags = 0;
    for f in &p.flags {
        flags |= match f.as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => FLAG_SPEC_ALLOW,
            // The tool's child is single-threaded: nothing to synchronise.
            "SECCOMP_FILTER_FLAG_TSYNC" => 0,
            other => return Err(SeccompError::Unsupported(format!("the flag {other}"))),
        };
    }
    Ok(Filter {
        program: export(&ctx)?,
        flags,
    })
}

/// The filter as the kernel loads it: libseccomp of Debian 12 (2.5) writes
/// it to a file descriptor only, so it goes through a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let io = |e: std::io::Error| SeccompError::Compile(e.to_string());
    let fd = nix::sys::memfd::memfd_create(c"kns-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| io(e.into()))?;
    ctx.export_bpf(&fd)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let mut file = std::fs::File::from(fd);
    file.rewind().map_err(io)?;
    let mut program = Vec::new();
    file.read_to_end(&mut program).map_err(io)?;
    if program.is_empty() || program.len() % 8 != 0 {
        return Err(SeccompError::Compile(format!(
            "libseccomp wrote {} bytes, not whole instructions",
            program.len()
        )));
    }
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_profile_compiles_to_whole_instructions_with_its_flags() {
        let f = compile(&json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "a_call_from_the_future"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO"}
            ]
        }))
        .unwrap();
        assert_eq!(f.program.len() % 8, 0);
        assert!(f.program.len() > 8 * 10, "{} bytes", f.program.len());
        assert_eq!(f.flags, FLAG_SPEC_ALLOW);
    }

    #[test]
    fn what_cannot_be_applied_is_refused_by_name() {
        let bad = |p: serde_json::Value, what: &str| {
            let e = compile(&p).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        bad(json!({"defaultAction": "SCMP_ACT_NOTIFY"}), "SCMP_ACT_NOTIFY");
        bad(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
            "notify listener",
        );
        bad(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}),
            "SCMP_CMP_SOMETIMES",
        );
        bad(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW"]}),
            "SECCOMP_FILTER_FLAG_NEW",
        );
        bad(json!({"syscalls": []}), "not a valid OCI profile");
        // Faked success on the calls that take the container's identity.
        bad(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 0}),
            "fakes success",
        );
        bad(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read", "capset"],
                   "action": "SCMP_ACT_ERRNO", "errnoRet": 0}]}),
            "errno 0 on capset",
        );
    }
}
