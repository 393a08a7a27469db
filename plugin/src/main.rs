//! `kubectl-ns`: parse, dispatch, map errors to exit codes (see `exit`).
#![forbid(unsafe_code)]

use std::os::fd::AsFd;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use kns_plugin::cli::{Cli, Command};
use kns_plugin::commands;
use kns_plugin::error::{self, Failure};

/// The mistakes kubectl users make first here (`-n NAME`, a command without
/// `--`): say what to use.
fn usage_hint(args: &[String]) -> Option<String> {
    // `kubectl ns NAME` and `kubectl ns -` are kubens (also a plugin named
    // `ns`): this one must not look like a broken copy of it.
    let subcommand = |w: &str| Cli::command().find_subcommand(w).is_some();
    if let [_, word] = args
        && (word == "-" || !word.starts_with('-'))
        && !subcommand(word)
    {
        return Some(format!(
            "Hint: this `kubectl ns` is kubectl-ns, which runs node tools inside a pod's kernel namespaces \
             (`kubectl ns exec POD -n -- ss`); it does not switch the Kubernetes namespace as kubens does. \
             To switch: kubectl config set-context --current --namespace {}. If you meant kubens, \
             `kubectl plugin list` shows which `ns` plugin kubectl runs and warns when one shadows another.",
            if word == "-" { "NAME" } else { word }
        ));
    }
    // `ls -n prod`, `audit -n prod`: kubectl's habit, where -n is no flag.
    if let Some(cmd) = args.iter().skip(1).find(|a| !a.starts_with('-'))
        && (cmd == "ls" || cmd == "audit")
        && args.iter().any(|a| a == "-n")
    {
        return Some(format!(
            "Hint: {cmd} looks at every kind of namespace at once, so it has no -n. For a Kubernetes namespace, \
             use --namespace NS{}.",
            if cmd == "ls" {
                " or the NS/POD form"
            } else {
                " (or -A for all of them)"
            }
        ));
    }
    // `exec mypod -n ss`: without `--`, the -n below is no namespace flag
    // with a value but a command that lost its separator.
    let Some(end) = args.iter().position(|a| a == "--") else {
        // A word after the target, where the command would be.
        let exec_at = args.iter().position(|a| a == "exec");
        let stray = exec_at.is_some_and(|i| args[i + 1..].iter().filter(|a| !a.starts_with('-')).count() > 1);
        return stray.then(|| {
            "Hint: the command to run goes after `--`, as with kubectl exec: kubectl ns exec POD -n -- ss -lntp"
                .to_owned()
        });
    };
    let i = args[..end].iter().position(|a| a == "-n")?;
    let next = args.get(i + 1).filter(|v| *v != "--" && !v.starts_with('-'))?;
    Some(format!(
        "Hint: -n is the network namespace here (as in nsenter). For the Kubernetes namespace `{next}`, \
         use --namespace {next} or the {next}/POD form."
    ))
}

/// Whether stdin carries data (a pipe or a file), not a terminal or /dev/null.
fn stdin_is_data() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_file())
}

fn main() -> ExitCode {
    kns_plugin::timings::init();
    let argv: Vec<String> = std::env::args().collect();
    // kubectl completes `kubectl ns …` by running `kubectl_complete-ns`
    // (a link to this binary); shells' scripts call `kubectl-ns __complete`.
    let called = std::path::Path::new(argv.first().map_or("", String::as_str))
        .file_name()
        .is_some_and(|n| n == "kubectl_complete-ns");
    let words = match (called, argv.get(1).map(String::as_str)) {
        (true, _) => Some(&argv[1..]),
        (false, Some("__complete")) => Some(&argv[2..]),
        _ => None,
    };
    if let Some(words) = words {
        let out = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(kns_plugin::complete::complete(words)))
            .unwrap_or_else(|_| ":4\n".to_owned());
        print!("{out}");
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { error::USAGE } else { 0 };
            let _ = e.print();
            if code != 0
                && let Some(h) = usage_hint(&argv)
            {
                eprintln!("{h}");
            }
            return ExitCode::from(code);
        }
    };
    if let Command::Exec(a) = &cli.command {
        match a.ipc_habit(&argv, stdin_is_data()) {
            Ok(None) => {}
            Ok(Some(note)) => eprintln!("kubectl-ns: {note}"),
            Err(f) => {
                eprintln!("kubectl-ns: {}", f.message);
                return ExitCode::from(f.code);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl-ns: cannot start: {e}");
            return ExitCode::from(error::FAILURE);
        }
    };
    let result: Result<u8, Failure> = rt.block_on(async {
        match cli.command {
            Command::Exec(a) => commands::exec::run(a).await,
            Command::Ls(a) => commands::ls::run(a).await,
            Command::Audit(a) => commands::audit::run(a).await,
            Command::Install(a) => commands::install::install(a).await,
            Command::Uninstall(a) => commands::install::uninstall(a).await,
            Command::Status(a) => commands::status::run(a).await,
            Command::Version(a) => commands::version::run(a).await,
            Command::Completion(a) => {
                use kns_plugin::cli::Shell;
                use kns_plugin::complete::{BASH, FISH, ZSH};
                print!(
                    "{}",
                    match a.shell {
                        Shell::Bash => BASH,
                        Shell::Zsh => ZSH,
                        Shell::Fish => FISH,
                    }
                );
                Ok(0)
            }
        }
    });
    let code = match result {
        Ok(c) => c,
        Err(f) => {
            eprintln!("kubectl-ns: {}", f.message);
            f.code
        }
    };
    kns_plugin::timings::report();
    // Exit now: a stdin reader thread may still sit in a blocking read.
    std::process::exit(i32::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hints_namespace_misuse_only() {
        assert!(
            usage_hint(&v(&["k", "exec", "-n", "prod", "web", "--", "ss"]))
                .unwrap()
                .contains("--namespace prod")
        );
        assert!(usage_hint(&v(&["k", "exec", "web", "-n", "--", "ss"])).is_none());
        assert!(usage_hint(&v(&["k", "exec", "web", "-n", "-p", "--", "ss"])).is_none());
        assert!(usage_hint(&v(&["k", "exec", "web", "--", "ip", "-n", "x"])).is_none());
        assert!(
            usage_hint(&v(&["k", "exec", "web", "-n", "ss"]))
                .unwrap()
                .contains("-n -- ss")
        );
    }
}
