//! The validated start of an exec session, shared by one target and
//! many (`-l`): flag checks, the environment, the namespaces, and the
//! check of what the agent says it started.

use std::collections::HashMap;

use kns_proto::agent::{ExecStart, Exited, Namespace, Started, ToolSource, WindowSize, exited};

use super::terminal;
use crate::cli::target::Target;
use crate::cli::{ExecArgs, NsFlags, Tools};
use crate::error::{Failure, SessionError, UsageError};
use crate::kube::resolve::KubeTarget;

/// Largest message accepted from the agent (its chunks are 1 MiB).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

impl NsFlags {
    /// The namespaces chosen, or a usage error when none is.
    pub fn namespaces(&self) -> Result<Vec<Namespace>, Failure> {
        let all = self.all;
        let chosen: Vec<Namespace> = [
            (self.net, Namespace::Net),
            (self.pid, Namespace::Pid),
            (self.mount, Namespace::Mnt),
            (self.uts, Namespace::Uts),
            (self.ipc, Namespace::Ipc),
            (self.user, Namespace::User),
            (self.cgroup, Namespace::Cgroup),
            (self.time, Namespace::Time),
        ]
        .into_iter()
        .filter(|(on, _)| all || *on)
        .map(|(_, n)| n)
        .collect();
        if chosen.is_empty() {
            return Err(UsageError::NoNamespace.into());
        }
        Ok(chosen)
    }
}

/// The validated start message (the target is filled in once resolved).
pub(crate) fn start_message(args: &ExecArgs, tty: bool) -> Result<ExecStart, Failure> {
    check_target_flags(args)?;
    check_tool_flags(args)?;
    let agent_tools = args.tools == Tools::Agent;
    let env = environment(args, tty)?;
    // -a with the agent's tools: every kind but the mount namespace, which
    // is where those tools come from, and the user namespace (see above).
    let namespaces = args
        .ns
        .namespaces()?
        .into_iter()
        .filter(|n| !(agent_tools && matches!(n, Namespace::Mnt | Namespace::User)))
        .map(|n| n as i32)
        .collect();
    Ok(ExecStart {
        target: None,
        namespaces,
        argv: args.command.clone(),
        env,
        workdir: args.workdir.clone().unwrap_or_default(),
        tty,
        // -t implies stdin, also when it falls back to pipes because stdin
        // is not a terminal (`echo x | kubectl ns exec -t … -- cat`).
        stdin: args.stdin || args.tty,
        no_mount_proc: args.no_mount_proc,
        all: args.ns.all,
        privileged: args.privileged,
        tools: match args.tools {
            Tools::Node => ToolSource::Node,
            Tools::Agent => ToolSource::Agent,
        } as i32,
        window: if tty {
            terminal::size().map(|(rows, cols)| WindowSize { rows, cols })
        } else {
            None
        },
    })
}

/// The flags that depend on the kind of target, in the order they are
/// reported.
fn check_target_flags(args: &ExecArgs) -> Result<(), Failure> {
    // clap's `requires` does not hold these to -l here: said by hand.
    if args.selector.is_none()
        && let Some(flag) = [(args.output.is_some(), "-o"), (args.all_namespaces, "-A")]
            .into_iter()
            .find_map(|(given, flag)| given.then_some(flag))
    {
        return Err(UsageError::WithoutSelector { flag }.into());
    }
    if let Some(c) = &args.container
        && args
            .target
            .as_ref()
            .is_some_and(|t| !matches!(t, Target::Kube(KubeTarget::Pod { .. })))
    {
        return Err(UsageError::ContainerOfNoPod { container: c.clone() }.into());
    }
    if let Some(t) = &args.target {
        crate::agent::route::namespace_applies(&args.kube, t)?;
    }
    Ok(())
}

/// The flags that exclude one another around `--tools agent`, and those
/// that would change nothing.
fn check_tool_flags(args: &ExecArgs) -> Result<(), Failure> {
    let agent_tools = args.tools == Tools::Agent;
    if agent_tools && args.ns.user {
        return Err(UsageError::AgentToolsWithUser.into());
    }
    if agent_tools && args.ns.mount {
        return Err(UsageError::AgentToolsWithMount.into());
    }
    if args.privileged && !(args.ns.mount || args.ns.all) || args.privileged && agent_tools {
        return Err(UsageError::PrivilegedWithoutMount.into());
    }
    let ns = &args.ns;
    // -a may drop the mount namespace (a target without a container
    // identity), which the agent alone knows: then the flag counts.
    if args.no_mount_proc && !ns.all && (ns.mount || !ns.pid) {
        return Err(UsageError::NoMountProcUnused.into());
    }
    Ok(())
}

/// `-e KEY=VALUE`s, and the terminal's `TERM` for a TTY.
fn environment(args: &ExecArgs, tty: bool) -> Result<HashMap<String, String>, Failure> {
    let mut env = HashMap::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_owned(), v.to_owned());
            }
            _ => {
                return Err(UsageError::NotKeyValue { given: kv.clone() }.into());
            }
        }
    }
    if tty && let Ok(term) = std::env::var("TERM") {
        env.entry("TERM".into()).or_insert(term);
    }
    Ok(env)
}

/// Checks that the agent ran the tool from the source asked for: an agent
/// older than `--tools` ignores the field and runs the node's tool, which
/// must not pass for the agent's (the session is then dropped, which kills
/// the tool, before any of its output is shown).
pub(crate) fn check_started(tools_asked: i32, started: &Started) -> Result<(), Failure> {
    if tools_asked != started.tools {
        return Err(SessionError::AgentTools.into());
    }
    Ok(())
}

/// The remote exit status as `(code, signal)`.
pub(crate) fn status_of(e: &Exited) -> (Option<i32>, Option<i32>) {
    match e.status {
        Some(exited::Status::Code(c)) => (Some(c), None),
        Some(exited::Status::Signal(s)) => (None, Some(s)),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error;

    #[test]
    fn all_means_every_namespace() {
        let f = NsFlags {
            all: true,
            ..Default::default()
        };
        assert_eq!(f.namespaces().unwrap().len(), 8);
        let f = NsFlags {
            net: true,
            uts: true,
            ..Default::default()
        };
        assert_eq!(f.namespaces().unwrap(), vec![Namespace::Net, Namespace::Uts]);
        let e = NsFlags::default().namespaces().unwrap_err();
        assert_eq!(e.code(), error::USAGE);
        assert!(e.to_string().contains("no namespace chosen"));
    }

    fn start(flags: &[&str]) -> Result<ExecStart, Failure> {
        use clap::Parser;
        let argv = ["kubectl-ns", "exec", "--agent", "unix:///x", "node"]
            .iter()
            .chain(flags)
            .chain(&["--", "ss"]);
        let crate::cli::Command::Exec(a) = crate::cli::Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        start_message(&a, false)
    }

    #[test]
    fn the_agents_tools_exclude_the_mount_namespace() {
        let s = start(&["-n", "--tools", "agent"]).unwrap();
        assert_eq!(s.tools, ToolSource::Agent as i32);
        assert_eq!(start(&["-n"]).unwrap().tools, ToolSource::Node as i32);
        // -a: every kind but the one the tools come from, and the user
        // namespace.
        let s = start(&["-a", "--tools", "agent"]).unwrap();
        assert_eq!(s.namespaces.len(), 6);
        assert!(!s.namespaces.contains(&(Namespace::Mnt as i32)) && s.all);
        assert!(!s.namespaces.contains(&(Namespace::User as i32)));
        for flags in [
            &["-m", "--tools", "agent"][..],
            &["-n", "-U", "--tools", "agent"],
            &["-n", "-m", "--tools", "agent"],
            &["-a", "--privileged", "--tools", "agent"],
        ] {
            let e = start(flags).unwrap_err();
            assert_eq!(e.code(), error::USAGE, "{flags:?}");
            assert!(e.to_string().contains("--tools agent"), "{flags:?}: {}", e);
        }
    }

    #[test]
    fn a_session_from_another_source_than_asked_is_refused() {
        let started = |tools: ToolSource| Started {
            tools: tools as i32,
            ..Default::default()
        };
        assert!(check_started(ToolSource::Agent as i32, &started(ToolSource::Agent)).is_ok());
        let e = check_started(ToolSource::Agent as i32, &started(ToolSource::Node)).unwrap_err();
        assert!(e.to_string().contains("older than --tools agent"), "{}", e);
    }
}
