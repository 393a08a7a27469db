//! The node directory recordings are kept in: one file per session, named
//! `NODE_SESSION_UNIXTIME.cast`, readable by root alone (what a session
//! showed may be secret), and bounded in total: before a recording starts,
//! the oldest are removed until the newest and a whole new one fit.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} {path} (the recordings directory, --recordings-dir): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { what, path, source }
}

/// A recording removed to make room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub name: String,
    pub size: u64,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty recording for session `session` on `node`, after
    /// removing the oldest recordings until `max_total` holds them and a
    /// whole new one of `max_session`; returns what was removed.
    pub fn create(
        &self,
        node: &str,
        session: u64,
        max_session: u64,
        max_total: u64,
    ) -> Result<(File, String, Vec<Removed>), StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("create", &self.dir))?;
        // A directory made before (by an older agent, or a hostPath's
        // DirectoryOrCreate, 0755) is closed to others all the same.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("restrict", &self.dir))?;
        let removed = self.prune(max_total.saturating_sub(max_session))?;
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // A node's name is a DNS subdomain; whatever --node-name says, the
        // file stays in the directory.
        let node: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{node}_{session}_{at}.cast");
        let path = self.dir.join(&name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok((file, name, removed))
    }

    /// Removes the oldest recordings until those left hold at most `keep`
    /// bytes.
    fn prune(&self, keep: u64) -> Result<Vec<Removed>, StoreError> {
        let mut all = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let e = e.map_err(io_err("list", &self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if !name.ends_with(".cast") || !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            all.push((modified, name, meta.len()));
        }
        all.sort();
        let mut total: u64 = all.iter().map(|(_, _, size)| size).sum();
        let mut removed = Vec::new();
        for (_, name, size) in all {
            if total <= keep {
                break;
            }
            let path = self.dir.join(&name);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            total -= size;
            removed.push(Removed { name, size });
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_until_a_new_one_fits_and_the_directory_is_roots_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("sessions"));
        for (i, size) in [(1u64, 400usize), (2, 300), (3, 200)] {
            let (f, name, removed) = store.create("n", i, 0, u64::MAX).unwrap();
            assert!(removed.is_empty());
            assert!(
                name.starts_with(&format!("n_{i}_")) && name.ends_with(".cast"),
                "{name}"
            );
            std::io::Write::write_all(&mut &f, &vec![b'x'; size]).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i))
                .unwrap();
        }
        // 900 bytes kept, at most 700 in all, 300 of it for the new one:
        // the two oldest (400, then 300) go.
        let (_, _, removed) = store.create("n", 4, 300, 700).unwrap();
        let sizes: Vec<u64> = removed.iter().map(|r| r.size).collect();
        assert_eq!(sizes, [400, 300]);
        assert!(removed[0].name.starts_with("n_1_"), "{removed:?}");
        let (_, name, _) = store.create("../x/y", 5, 0, u64::MAX).unwrap();
        assert!(name.starts_with(".._x_y_5_"), "{name}");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        let left: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left.len(), 3);
        assert!(left.iter().all(|p| mode(p) == 0o600));
    }
}
