//! Which agent pod serves which node, and which node runs which pod,
//! remembered for a few minutes so that a repeated `exec POD` costs one API
//! lookup (the pod) instead of two (the pod, then the agents on its node),
//! and the port-forward to the remembered agent can open while the pod
//! lookup is in flight.
//!
//! The cache lives where kubectl keeps its own (`$KUBECACHEDIR`, else
//! `~/.kube/cache`), one file per API server and agent namespace. An entry
//! is only a guess: the port-forward checks it (a pod that is gone answers
//! 404, one whose agent does not listen closes the stream) and the caller
//! then looks the agent up afresh. So nothing here is ever an error: a file
//! that cannot be read, parsed or written, or that another user could
//! have written, is an empty cache.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How long an entry is trusted: agent pods change on upgrades and node
/// replacements, which a few minutes' staleness rides out (and a stale
/// entry costs only one failed port-forward).
pub const TTL: Duration = Duration::from_secs(300);

/// At most this many pods are remembered: a user who visits more simply
/// waits for the pod lookup before the port-forward on the oldest.
const MAX_PODS: usize = 256;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Entries {
    /// Node name → its agent pod.
    nodes: BTreeMap<String, Entry>,
    /// `namespace/name` of a pod → the node it ran on (absent in caches
    /// written before pods were remembered).
    #[serde(default)]
    pods: BTreeMap<String, Placed>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Placed {
    node: String,
    /// When it was seen there, in seconds since the epoch.
    at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    pod: String,
    /// When it was looked up, in seconds since the epoch.
    at: u64,
}

/// The node → agent pod cache of one cluster and agent namespace.
#[derive(Debug, Clone)]
pub struct AgentCache {
    path: PathBuf,
}

/// A URL or namespace as one path component, as kubectl names its
/// discovery cache directories (`https://10.0.0.1:6443` → `10.0.0.1_6443`).
fn component(s: &str) -> String {
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    s.trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AgentCache {
    /// The cache under kubectl's cache directory, or `None` when there is
    /// none (no `$KUBECACHEDIR` and no home, as in some in-cluster runs).
    pub fn for_cluster(cluster_url: &str, agent_namespace: &str) -> Option<AgentCache> {
        let base = match std::env::var_os("KUBECACHEDIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".kube/cache"),
        };
        Some(AgentCache::under(&base, cluster_url, agent_namespace))
    }

    /// The cache under `base`.
    pub fn under(base: &Path, cluster_url: &str, agent_namespace: &str) -> AgentCache {
        AgentCache {
            path: base
                .join("kubectl-ns")
                .join(component(cluster_url))
                .join(format!("agents-{}.json", component(agent_namespace))),
        }
    }

    /// The file the entries live in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The agent pod remembered for `node`, if still fresh.
    pub fn get(&self, node: &str) -> Option<String> {
        self.get_at(node, now())
    }

    fn get_at(&self, node: &str, now: u64) -> Option<String> {
        self.load(now).nodes.remove(node).map(|e| e.pod)
    }

    /// Remembers that `pod` serves `node`.
    pub fn put(&self, node: &str, pod: &str) {
        self.put_at(node, pod, now());
    }

    fn put_at(&self, node: &str, pod: &str, now: u64) {
        let mut entries = self.load(now);
        entries.nodes.insert(
            node.to_owned(),
            Entry {
                pod: pod.to_owned(),
                at: now,
            },
        );
        self.store(&entries);
    }

    /// The node pod `key` (`namespace/name`) ran on and that node's agent
    /// pod, when both are fresh: a guess, to be checked against the pod.
    pub fn guess(&self, key: &str) -> Option<(String, String)> {
        self.guess_at(key, now())
    }

    fn guess_at(&self, key: &str, now: u64) -> Option<(String, String)> {
        let mut entries = self.load(now);
        let node = entries.pods.remove(key)?.node;
        let agent = entries.nodes.remove(&node)?.pod;
        Some((node, agent))
    }

    /// Remembers that pod `key` runs on `node`.
    pub fn place(&self, key: &str, node: &str) {
        self.place_at(key, node, now());
    }

    fn place_at(&self, key: &str, node: &str, now: u64) {
        let mut entries = self.load(now);
        entries.pods.insert(
            key.to_owned(),
            Placed {
                node: node.to_owned(),
                at: now,
            },
        );
        while entries.pods.len() > MAX_PODS {
            let oldest = entries
                .pods
                .iter()
                .min_by_key(|(_, p)| p.at)
                .map(|(k, _)| k.clone());
            entries.pods.remove(&oldest.unwrap_or_default());
        }
        self.store(&entries);
    }

    /// Forgets `node`'s entry (its pod did not answer).
    pub fn forget(&self, node: &str) {
        self.forget_at(node, now());
    }

    fn forget_at(&self, node: &str, now: u64) {
        let mut entries = self.load(now);
        if entries.nodes.remove(node).is_some() {
            self.store(&entries);
        }
    }

    /// The fresh entries; expired ones, and any from the future (a clock
    /// set back), are dropped.
    fn load(&self, now: u64) -> Entries {
        let mut entries: Entries = self
            .read_own()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let fresh = |at: u64| at <= now && now - at < TTL.as_secs();
        entries.nodes.retain(|_, e| fresh(e.at));
        entries.pods.retain(|_, p| fresh(p.at));
        entries
    }

    /// The file's bytes, if only this user could have written them: the
    /// file and its directory are this user's and writable by no one else,
    /// and the file is no symlink. An entry names the pod the user's
    /// credentials go to; another user's would send them to a pod of
    /// theirs (a shared `$KUBECACHEDIR`, a HOME kept under sudo).
    fn read_own(&self) -> Option<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let uid = nix::unistd::geteuid().as_raw();
        let own = |m: &std::fs::Metadata| m.uid() == uid && m.mode() & 0o022 == 0;
        let untrusted = || {
            tracing::debug!(path = %self.path.display(), "agent cache not trusted: another user could write it");
        };
        if !own(&std::fs::symlink_metadata(self.path.parent()?).ok()?) {
            untrusted();
            return None;
        }
        // Non-blocking: a FIFO put there must not hold the open.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || !own(&meta) {
            untrusted();
            return None;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Writes the entries atomically (a temporary file renamed over the
    /// old one), readable by the user only; failures are logged, not
    /// raised, since a missing cache only costs a lookup.
    fn store(&self, entries: &Entries) {
        if let Err(e) = self.try_store(entries) {
            tracing::debug!(?e, path = %self.path.display(), "cannot write the agent cache");
        }
    }

    fn try_store(&self, entries: &Entries) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Some(owner) = foreign_owner(dir) {
            return Err(std::io::Error::other(format!(
                "root does not write into a tree of uid {owner} (HOME kept under sudo?): its file or directories \
                 would be root's, which that user could then neither trust nor replace"
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        // A leftover from a crashed run with the same PID.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f
            .write_all(&serde_json::to_vec(entries).map_err(std::io::Error::other)?)
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// For root, the owner of a directory at or above `dir` that is another
/// user's: what root would make there is root's, so the user's own runs
/// would refuse the file and could not create their own in a root-owned
/// directory; and a root-owned directory already there (an earlier `sudo
/// -E`) is no sign that the tree is root's. A symlink on the way counts
/// twice: its own directories, whose owner may point it elsewhere later,
/// and those it leads to. Other users cannot write where they do not own
/// (or share) the tree, so only root is held back.
fn foreign_owner(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let dir = std::path::absolute(dir).ok()?;
    let real = dir
        .ancestors()
        .find(|d| std::fs::symlink_metadata(d).is_ok())
        .and_then(|d| std::fs::canonicalize(d).ok());
    dir.ancestors()
        .chain(real.iter().flat_map(|r| r.ancestors()))
        .filter_map(|d| std::fs::symlink_metadata(d).ok())
        .map(|m| m.uid())
        .find(|&uid| uid != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory for one test (the plugin has no tempfile crate).
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("kns-cache-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cache(dir: &Path) -> AgentCache {
        AgentCache::under(dir, "https://10.0.0.1:6443/", "kubectl-ns-system")
    }

    #[test]
    fn keyed_by_server_and_agent_namespace() {
        let c = AgentCache::under(Path::new("/c"), "https://10.0.0.1:6443", "kubectl-ns-system");
        assert_eq!(
            c.path(),
            Path::new("/c/kubectl-ns/10.0.0.1_6443/agents-kubectl-ns-system.json")
        );
        let c = AgentCache::under(Path::new("/c"), "https://rancher/k8s/clusters/c-1", "../x");
        assert_eq!(
            c.path(),
            Path::new("/c/kubectl-ns/rancher_k8s_clusters_c-1/agents-.._x.json")
        );
    }

    #[test]
    fn remembers_until_the_ttl() {
        let dir = Dir::new("ttl");
        let c = cache(dir.path());
        assert_eq!(c.get_at("node-a", 1000), None);
        c.put_at("node-a", "agent-1", 1000);
        c.put_at("node-b", "agent-2", 1000);
        assert_eq!(c.get_at("node-a", 1000).as_deref(), Some("agent-1"));
        assert_eq!(c.get_at("node-b", 1299).as_deref(), Some("agent-2"));
        assert_eq!(c.get_at("node-b", 1300), None);
        // Written in the clock's past: not trusted either.
        assert_eq!(c.get_at("node-a", 999), None);
        c.forget_at("node-a", 1000);
        assert_eq!(c.get_at("node-a", 1000), None);
    }

    #[test]
    fn a_guess_needs_the_pods_node_and_that_nodes_agent() {
        let dir = Dir::new("guess");
        let c = cache(dir.path());
        c.place_at("default/web", "node-a", 1000);
        assert_eq!(c.guess_at("default/web", 1000), None, "no agent known for node-a");
        c.put_at("node-a", "agent-1", 1000);
        assert_eq!(
            c.guess_at("default/web", 1001),
            Some(("node-a".to_owned(), "agent-1".to_owned()))
        );
        // Moved: the newest placement wins.
        c.put_at("node-b", "agent-2", 1000);
        c.place_at("default/web", "node-b", 1002);
        assert_eq!(
            c.guess_at("default/web", 1002),
            Some(("node-b".to_owned(), "agent-2".to_owned()))
        );
        assert_eq!(c.guess_at("default/web", 1300), None, "expired");
        assert_eq!(c.guess_at("other/web", 1002), None);
    }

    #[test]
    fn pods_are_bounded_oldest_out_and_old_files_still_read() {
        let dir = Dir::new("bounded");
        let c = cache(dir.path());
        c.put_at("n", "agent-1", 1000);
        for i in 0..=MAX_PODS as u64 {
            c.place_at(&format!("ns/p{i}"), "n", 1000 + i);
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(c.path()).unwrap()).unwrap();
        assert_eq!(v["pods"].as_object().unwrap().len(), MAX_PODS);
        assert_eq!(
            c.guess_at("ns/p0", 1000 + MAX_PODS as u64),
            None,
            "the oldest went"
        );
        assert!(
            c.guess_at(&format!("ns/p{MAX_PODS}"), 1000 + MAX_PODS as u64)
                .is_some()
        );
        // A cache from before pods were remembered keeps its nodes.
        std::fs::write(c.path(), br#"{"nodes":{"n":{"pod":"agent-1","at":1000}}}"#).unwrap();
        assert_eq!(c.get_at("n", 1000).as_deref(), Some("agent-1"));
    }

    #[test]
    fn written_atomically_for_the_user_only() {
        let dir = Dir::new("atomic");
        let c = cache(dir.path());
        c.put("node-a", "agent-1");
        let mode = std::fs::metadata(c.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let parent = c.path().parent().unwrap();
        let names: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec!["agents-kubectl-ns-system.json"],
            "no temporary file left"
        );
    }

    #[test]
    fn a_corrupt_or_unwritable_cache_is_empty_not_an_error() {
        let dir = Dir::new("corrupt");
        let c = cache(dir.path());
        std::fs::create_dir_all(c.path().parent().unwrap()).unwrap();
        for junk in [
            &b"{not json"[..],
            b"",
            b"\xff\xfe",
            br#"{"nodes":{"n":{"pod":3}}}"#,
        ] {
            std::fs::write(c.path(), junk).unwrap();
            assert_eq!(c.get("n"), None);
        }
        // A corrupt file is replaced on the next write.
        c.put("n", "agent-1");
        assert_eq!(c.get("n").as_deref(), Some("agent-1"));
        // A cache whose directory is a file: nothing is remembered, nothing fails.
        let blocked = AgentCache::under(&c.path().join("not-a-dir"), "https://x", "ns");
        blocked.put("n", "agent-1");
        assert_eq!(blocked.get("n"), None);
    }

    #[test]
    fn root_writes_nothing_into_another_users_tree() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = Dir::new("sudo-home");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let chown = |p: &Path, uid: u32| std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
        chown(&home, 4242);
        let c = cache(&home.join(".kube/cache"));
        c.put("n", "agent-1");
        assert!(
            !home.join(".kube").exists(),
            "root made a directory in the user's home"
        );
        // Nor where an earlier run left a directory of root's there.
        std::fs::create_dir(home.join(".kube")).unwrap();
        c.put("n", "agent-1");
        assert!(
            !home.join(".kube/cache").exists(),
            "root wrote under its own directory in the user's home"
        );
        // The user's own cache stays theirs, untouched.
        let kube = home.join(".kube/cache/kubectl-ns/10.0.0.1_6443");
        std::fs::create_dir_all(&kube).unwrap();
        std::fs::write(c.path(), b"{}").unwrap();
        for p in [".kube", ".kube/cache", ".kube/cache/kubectl-ns"] {
            chown(&home.join(p), 4242);
        }
        chown(&kube, 4242);
        chown(c.path(), 4242);
        c.put("n", "agent-1");
        assert_eq!(std::fs::read(c.path()).unwrap(), b"{}");
        // Nor through a link of root's that leads into the user's home.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(home.join(".kube"), &link).unwrap();
        let linked = cache(&link);
        linked.put("n", "agent-1");
        assert!(
            !home.join(".kube/kubectl-ns").exists(),
            "root followed a link into the user's home"
        );
        // Root's own tree is written as before.
        let mine = cache(&dir.path().join("root-cache"));
        mine.put("n", "agent-1");
        assert_eq!(mine.get("n").as_deref(), Some("agent-1"));
    }
}
