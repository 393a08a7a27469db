//! Shell completion in cobra's `__complete` protocol, the one kubectl
//! (≥ 1.26) speaks to a plugin through a `kubectl_complete-ns` executable:
//! given the words after `ns`, the last one being completed, print one
//! candidate per line (`value<TAB>description`), then `:DIRECTIVE`.
//! Subcommands and flags come from the command-line definitions; pods,
//! nodes, containers and namespaces from the API, within a short timeout so
//! that a slow API server never hangs the shell.

use std::time::Duration;

use clap::CommandFactory;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams};

use crate::cli::{Cli, KubeArgs};

/// Cobra's directives (a bit set).
const NO_SPACE: u32 = 2;
const NO_FILE_COMP: u32 = 4;
/// How long the API may take to answer before completion gives up, unless
/// `KNS_COMPLETION_TIMEOUT` says otherwise.
const API_TIMEOUT: Duration = Duration::from_secs(2);

/// [`API_TIMEOUT`], or `KNS_COMPLETION_TIMEOUT` (a kubectl duration) for a
/// cluster that is slow to list. A value that does not parse is ignored: a
/// completion has nowhere to report it.
fn api_timeout() -> Duration {
    std::env::var("KNS_COMPLETION_TIMEOUT")
        .ok()
        .and_then(|v| crate::cli::parse_duration(&v).ok())
        .unwrap_or(API_TIMEOUT)
}

/// The scripts `kubectl ns completion SHELL` prints, for `kubectl-ns`
/// called by its own name; under kubectl, `kubectl_complete-ns` is used.
pub const BASH: &str = r#"# kubectl-ns completion for bash: source <(kubectl-ns completion bash)
_kubectl_ns() {
    local out directive c IFS=$'\n'
    out=$(kubectl-ns __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return
    directive=${out##*:}
    out=${out%:*}
    COMPREPLY=()
    for c in $out; do COMPREPLY+=("${c%%$'\t'*}"); done
    (( directive & 2 )) && compopt -o nospace
    (( ${#COMPREPLY[@]} == 0 && !(directive & 4) )) && compopt -o default
    return 0
}
complete -F _kubectl_ns kubectl-ns
"#;

pub const ZSH: &str = r#"#compdef kubectl-ns
# kubectl-ns completion for zsh: source <(kubectl-ns completion zsh)
_kubectl_ns() {
    local out directive l
    local -a lines cands
    out=$(kubectl-ns __complete "${(@)words[2,CURRENT]}" 2>/dev/null) || return 1
    lines=("${(@f)out}")
    directive=${lines[-1]#:}
    for l in "${(@)lines[1,-2]}"; do cands+=("${l%%$'\t'*}"); done
    if (( ${#cands} )); then
        if (( directive & 2 )); then compadd -S '' -- "${cands[@]}"; else compadd -- "${cands[@]}"; fi
    elif (( !(directive & 4) )); then
        _files
    fi
}
compdef _kubectl_ns kubectl-ns
"#;

pub const FISH: &str = r#"# kubectl-ns completion for fish: kubectl-ns completion fish | source
function __kubectl_ns_complete
    kubectl-ns __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null | string match -v -r '^:[0-9]+$'
end
complete -c kubectl-ns -f -a '(__kubectl_ns_complete)'
"#;

/// The answer for `words` (the words after the program name, the last
/// one being completed, possibly empty), in cobra's format.
pub async fn complete(words: &[String]) -> String {
    let (candidates, directive) = candidates(words).await;
    let mut out = String::new();
    for (value, help) in candidates {
        out.push_str(&value);
        if !help.is_empty() {
            out.push('\t');
            out.push_str(&help.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        out.push('\n');
    }
    out.push_str(&format!(":{directive}\n"));
    out
}

type Candidates = Vec<(String, String)>;

async fn candidates(words: &[String]) -> (Candidates, u32) {
    let (partial, done) = match words.split_last() {
        Some((p, d)) => (p.as_str(), d),
        None => ("", &[][..]),
    };
    let cli = Cli::command();
    let Some(sub_at) = done.iter().position(|w| !w.starts_with('-')) else {
        let subs = cli
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| (s.get_name().to_owned(), about(s.get_about())));
        return (filtered(subs, partial), NO_FILE_COMP);
    };
    let Some(sub) = cli.find_subcommand(&done[sub_at]) else {
        return (Vec::new(), NO_FILE_COMP);
    };
    let rest = &done[sub_at + 1..];
    // After `--` come the tool's own arguments: the shell's files.
    if rest.iter().any(|w| w == "--") {
        return (Vec::new(), 0);
    }
    let scan = Scan::of(sub, rest);
    if let Some(flag) = rest.last().and_then(|w| value_flag(sub, w)) {
        return flag_value(sub, &flag, &scan, partial).await;
    }
    if partial.starts_with('-') {
        let flags = sub.get_arguments().filter(|a| !a.is_hide_set()).flat_map(|a| {
            let help = about(a.get_help());
            let long = a.get_long().map(|l| (format!("--{l}"), help.clone()));
            let short = a.get_short().map(|s| (format!("-{s}"), help.clone()));
            long.into_iter().chain(short)
        });
        return (filtered(flags, partial), NO_FILE_COMP);
    }
    let Some(first) = sub.get_positionals().next() else {
        return (Vec::new(), NO_FILE_COMP);
    };
    match (first.get_id().as_str(), scan.positionals) {
        // Directly, on a node: the agent's own forms; no API to ask.
        ("target", 0) if crate::agent::route::Route::of(&scan.kube).direct().is_some() => {
            let forms = ["container/", "pid/", "node"].map(|f| (f.to_owned(), String::new()));
            let all = filtered(forms.into_iter(), partial);
            let directive = if all.iter().all(|(v, _)| v.ends_with('/')) {
                NO_FILE_COMP | NO_SPACE
            } else {
                NO_FILE_COMP
            };
            (all, directive)
        }
        ("target", 0) => targets(&scan.kube, partial).await,
        (_, 0) => {
            let values = first
                .get_possible_values()
                .into_iter()
                .map(|v| (v.get_name().to_owned(), about(v.get_help())));
            (filtered(values, partial), NO_FILE_COMP)
        }
        _ => (Vec::new(), NO_FILE_COMP),
    }
}

fn about(s: Option<&clap::builder::StyledStr>) -> String {
    s.map(|s| s.to_string()).unwrap_or_default()
}

fn filtered(all: impl Iterator<Item = (String, String)>, prefix: &str) -> Candidates {
    all.filter(|(v, _)| v.starts_with(prefix)).collect()
}

/// The flag `word` names, if it takes a value and the value is not in it
/// (`--namespace`, not `--namespace=x`).
fn value_flag(sub: &clap::Command, word: &str) -> Option<String> {
    let arg = if let Some(long) = word.strip_prefix("--") {
        sub.get_arguments().find(|a| a.get_long() == Some(long))?
    } else {
        let short = word.strip_prefix('-')?.chars().last()?;
        sub.get_arguments().find(|a| a.get_short() == Some(short))?
    };
    arg.get_action().takes_values().then(|| arg.get_id().to_string())
}

/// What the words so far say: how many positionals, and how to reach the
/// cluster.
struct Scan {
    positionals: usize,
    kube: KubeArgs,
    target: Option<String>,
}

impl Scan {
    fn of(sub: &clap::Command, words: &[String]) -> Scan {
        let mut scan = Scan {
            positionals: 0,
            kube: KubeArgs::default(),
            target: None,
        };
        let mut it = words.iter().peekable();
        while let Some(w) = it.next() {
            let (flag, inline) = match w.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (w.as_str(), None),
            };
            if !flag.starts_with('-') {
                scan.positionals += 1;
                scan.target.get_or_insert_with(|| w.clone());
                continue;
            }
            let Some(id) = value_flag(sub, flag) else { continue };
            let Some(v) = inline.or_else(|| it.next().cloned()) else {
                break;
            };
            match id.as_str() {
                "namespace" => scan.kube.namespace = Some(v),
                "context" => scan.kube.context = Some(v),
                "kubeconfig" => scan.kube.kubeconfig = Some(v.into()),
                "agent" => scan.kube.agent = Some(v),
                _ => {}
            }
        }
        scan.kube.agent_namespace = crate::kube::resolve::AGENT_NAMESPACE.to_owned();
        scan
    }
}

async fn flag_value(sub: &clap::Command, id: &str, scan: &Scan, partial: &str) -> (Candidates, u32) {
    match id {
        "namespace" | "agent_namespace" => {
            let names = api(&scan.kube, |c, _| async move {
                let list = Api::<Namespace>::all(c).list(&ListParams::default()).await?;
                Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
            })
            .await;
            (
                filtered(names.into_iter().map(|n| (n, String::new())), partial),
                NO_FILE_COMP,
            )
        }
        "container" => {
            let Some(target) = scan.target.clone() else {
                return (Vec::new(), NO_FILE_COMP);
            };
            let names = api(&scan.kube, |c, default| async move {
                let (ns, name) = match target.split_once('/') {
                    Some(("pod", n)) => (None, n.to_owned()),
                    Some((ns, n)) => (Some(ns.to_owned()), n.to_owned()),
                    None => (None, target),
                };
                let ns = ns.unwrap_or(default);
                let pod = Api::<Pod>::namespaced(c, &ns).get(&name).await?;
                Ok(pod
                    .spec
                    .map(|s| s.containers.into_iter().map(|c| c.name).collect())
                    .unwrap_or_default())
            })
            .await;
            (
                filtered(names.into_iter().map(|n| (n, String::new())), partial),
                NO_FILE_COMP,
            )
        }
        "context" => {
            let kc = match &scan.kube.kubeconfig {
                Some(p) => kube::config::Kubeconfig::read_from(p),
                None => kube::config::Kubeconfig::read(),
            };
            let names = kc.map(|k| k.contexts.into_iter().map(|c| c.name).collect::<Vec<_>>());
            let names = names.unwrap_or_default();
            (
                filtered(names.into_iter().map(|n| (n, String::new())), partial),
                NO_FILE_COMP,
            )
        }
        "kubeconfig" => (Vec::new(), 0),
        _ => {
            let values = sub
                .get_arguments()
                .find(|a| a.get_id() == id)
                .map(|a| a.get_possible_values())
                .unwrap_or_default()
                .into_iter()
                .map(|v| (v.get_name().to_owned(), about(v.get_help())));
            (filtered(values, partial), NO_FILE_COMP)
        }
    }
}

/// Pods (`POD`, `NS/POD`, `pod/POD`) and nodes (`node/NODE`).
async fn targets(kube: &KubeArgs, partial: &str) -> (Candidates, u32) {
    let (prefix, namespace) = match partial.split_once('/') {
        Some(("node", _)) => {
            let nodes = api(kube, |c, _| async move {
                let list = Api::<Node>::all(c).list(&ListParams::default()).await?;
                Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
            })
            .await;
            let all = nodes
                .into_iter()
                .map(|n| (format!("node/{n}"), "node".to_owned()));
            return (filtered(all, partial), NO_FILE_COMP);
        }
        Some(("pod", _)) => ("pod/".to_owned(), kube.namespace.clone()),
        Some((ns, _)) => (format!("{ns}/"), Some(ns.to_owned())),
        None => (String::new(), kube.namespace.clone()),
    };
    let pods = api(kube, |c, default| async move {
        let ns = namespace.unwrap_or(default);
        let list = Api::<Pod>::namespaced(c, &ns)
            .list(&ListParams::default())
            .await?;
        Ok(list.items.into_iter().filter_map(|p| p.metadata.name).collect())
    })
    .await;
    let mut all: Candidates = pods
        .into_iter()
        .map(|p| (format!("{prefix}{p}"), "pod".to_owned()))
        .collect();
    if prefix.is_empty() {
        all.push(("node/".to_owned(), "a node: node/NODE".to_owned()));
    }
    let all = filtered(all.into_iter(), partial);
    let directive = if !all.is_empty() && all.iter().all(|(v, _)| v.ends_with('/')) {
        NO_FILE_COMP | NO_SPACE
    } else {
        NO_FILE_COMP
    };
    (all, directive)
}

/// Asks the API (with the client and the namespace for pods given without
/// one) within [`api_timeout`]; nothing on any failure, as a
/// completion must never print an error into the user's command line.
async fn api<F, Fut>(kube: &KubeArgs, ask: F) -> Vec<String>
where
    F: FnOnce(kube::Client, String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, kube::Error>>,
{
    let work = async {
        let r = crate::agent::route::resolver(kube).await.ok()?;
        ask(r.client, r.namespace).await.ok()
    };
    tokio::time::timeout(api_timeout(), work)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}
