//! `kubectl-ns`: set up its log (`KNS_LOG`), parse, dispatch, map errors
//! to exit codes (see `error`).
#![forbid(unsafe_code)]

use std::os::fd::AsFd;
use std::process::ExitCode;

use clap::Parser;
use kns_plugin::cli::{Cli, Command, hint_for};
use kns_plugin::commands;
use kns_plugin::error::{self, Failure};

/// Whether stdin carries data (a pipe or a file), not a terminal or /dev/null.
fn stdin_is_data() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_file())
}

/// kubectl-ns's own log (`KNS_LOG=debug`, a filter as the agent's), on
/// stderr. Unset (or unparsable), nothing is set up and nothing is logged:
/// the output stays the command's and kubectl-ns's messages only.
fn init_tracing() {
    use std::io::IsTerminal;
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("KNS_LOG") else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    init_tracing();
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
                && let Some(h) = hint_for(&e, &argv)
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
                eprintln!("kubectl-ns: {f}");
                return ExitCode::from(f.code());
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
            Command::Sessions(a) => commands::sessions::run(a).await,
            Command::Replay(a) => commands::replay::run(a).await,
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
            eprintln!("kubectl-ns: {f}");
            f.code()
        }
    };
    kns_plugin::timings::report();
    // Exit now: a stdin reader thread may still sit in a blocking read.
    std::process::exit(i32::from(code))
}
