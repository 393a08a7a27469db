//! Hints for the mistakes kubectl users make first here: `-n NAME` (the
//! network namespace here, as in nsenter), a command without `--`, and
//! `kubectl ns NAME` meant for kubens.

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue};

use super::Cli;

/// The hint for a refused command line, after clap's message: where clap
/// already tipped a similar subcommand, one hint that follows on from its
/// tip (the word was a typo, or a namespace meant for kubens), not the
/// whole kubens explanation as if clap had said nothing.
pub fn hint_for(e: &clap::Error, args: &[String]) -> Option<String> {
    let suggested = match e.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        Some(ContextValue::Strings(s)) => s.first().map(String::as_str),
        _ => None,
    };
    match (suggested, args) {
        (Some(command), [_, word]) => Some(format!(
            "Hint: kubectl-ns has no command {word}: `kubectl ns {command}` is the nearest. If {word} is a \
             Kubernetes namespace to switch to, this `kubectl ns` is not kubens: kubectl config set-context \
             --current --namespace {word} (`kubectl plugin list` shows which `ns` plugin kubectl runs)."
        )),
        _ => usage_hint(args),
    }
}

/// The mistakes kubectl users make first here (`-n NAME`, a command without
/// `--`): say what to use.
pub fn usage_hint(args: &[String]) -> Option<String> {
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
    let exec_at = args.iter().position(|a| a == "exec");
    let end = args.iter().position(|a| a == "--");
    // The words between `exec` and `--` (or the end) that are no flags: the
    // target, and flags' values, which only make the count larger.
    let words = exec_at.map(|i| {
        args[i + 1..end.unwrap_or(args.len())]
            .iter()
            .filter(|a| !a.starts_with('-'))
            .count()
    });
    if words == Some(0) {
        return Some(
            "Hint: name what to enter after exec: POD, NS/POD, node/NODE, or -l SELECTOR for many pods; \
             then the command after `--`: kubectl ns exec POD -n -- ss -lntp"
                .to_owned(),
        );
    }
    let Some(end) = end else {
        // A target and no command, or a word after the target where the
        // command would be.
        return words.is_some().then(|| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_typo_of_a_command_gets_one_hint_after_clap_s_tip() {
        let args = v(&["k", "exce"]);
        let e = <Cli as clap::Parser>::try_parse_from(&args).unwrap_err();
        let h = hint_for(&e, &args).unwrap();
        assert!(h.contains("`kubectl ns exec` is the nearest"), "{h}");
        assert!(h.contains("--namespace exce"), "{h}");
        let args = v(&["k", "kube-system"]);
        let e = <Cli as clap::Parser>::try_parse_from(&args).unwrap_err();
        assert_eq!(hint_for(&e, &args), usage_hint(&args));
    }

    #[test]
    fn exec_without_a_target_or_a_command_says_where_they_go() {
        let target = |a: &[&str]| usage_hint(&v(a)).is_some_and(|h| h.contains("name what to enter"));
        let command = |a: &[&str]| usage_hint(&v(a)).is_some_and(|h| h.contains("goes after `--`"));
        assert!(target(&["k", "exec", "-n", "--", "ss", "-lntp"]));
        assert!(target(&["k", "exec", "-n"]));
        assert!(command(&["k", "exec", "web-1", "-n"]));
        assert!(!target(&["k", "exec", "-l", "app=web", "-n", "--", "ss"]));
        assert!(usage_hint(&v(&["k", "exec", "web-1", "-n", "--", "ss"])).is_none());
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
