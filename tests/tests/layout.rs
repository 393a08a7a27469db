//! The crates' module layout, read from their sources: no module (a
//! folder or a top-level file under `src/`) imports from a module that
//! imports it back, so every layer can be read, and changed, with what it
//! stands on alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's root, above this crate.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The names that follow `crate::` in `code`, each `crate::{a, b}` group
/// giving all of its names.
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` and `kns_crate::` are other paths.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(
                    group
                        .split(',')
                        .map(|p| ident(p.trim()))
                        .filter(|p| !p.is_empty()),
                );
            }
            None => out.push(ident(rest)),
        }
    }
    out
}

/// Module → the modules it names through `crate::`, for the crate whose
/// sources are in `src`: a module is a top-level folder or file, the crate
/// root (`lib.rs`, `main.rs`) none.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        // Comments name modules too ("see crate::x"): only code counts.
        let code: String = text
            .lines()
            .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
            .collect::<Vec<_>>()
            .join("\n");
        let named = graph.entry(module.clone()).or_default();
        named.extend(crate_paths(&code).into_iter().filter(|m| *m != module));
    }
    graph
}

/// The pairs of modules that import each other, with a file of each side.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (a, named) in graph {
        for b in named {
            if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

fn assert_no_cycles(krate: &str) {
    let graph = imports(&root().join(krate).join("src"));
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "in {krate}/src these modules import each other: {found:?} (put what they share where it \
         belongs, in the one the other stands on)"
    );
}

#[test]
fn the_plugins_modules_do_not_import_each_other() {
    assert_no_cycles("plugin");
}

#[test]
fn the_agents_modules_do_not_import_each_other() {
    assert_no_cycles("agent");
}

#[test]
fn a_cycle_is_found() {
    let graph = imports(&root().join("tests/fixtures/layout-cycle"));
    assert_eq!(cycles(&graph), [("a".to_owned(), "b".to_owned())], "{graph:?}");
    assert_eq!(
        crate_paths("use crate::{x::Y, z}; crate::w::f(); $crate::no; my_crate::no"),
        ["x", "z", "w"]
    );
}
