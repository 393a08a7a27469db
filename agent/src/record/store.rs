//! The node directory recordings are kept in: one file per session, named
//! `NODE_SESSION_UNIXTIME.cast`, readable by root alone (what a session
//! showed may be secret), and bounded in total: before a recording starts,
//! the oldest are removed until the newest and a whole new one fit.
//!
//! Read back ([`Store::open`]) by a name the client gives: taken only as a
//! plain file name directly in the directory, never a path, and opened
//! without following a link, so a replay reads a recording and nothing
//! else on the node.

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
    /// The recordings being written take the whole total already: none is
    /// removed to make room, so a new recorded session cannot start.
    #[error(
        "the recordings directory is full with the {live} recordings being written (each may grow to the \
         policy's maxSessionBytes, {max_session} bytes, within maxTotalBytes, {max_total}): retry when one \
         has ended"
    )]
    Full {
        live: usize,
        max_session: u64,
        max_total: u64,
    },
}

/// Why a recording asked for cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "`{0}` is not a recording's name: give the file name the audit trail's `recording.name` gives \
         (NODE_SESSION_UNIXTIME.cast, no directory) or the session's id"
    )]
    BadName(String),
    #[error(
        "this node has no recording {wanted}: the audit trail's `start` line of a recorded session names \
         its file (`recording.name`); older recordings may have been removed to keep the policy's \
         maxTotalBytes (the `removed` of a later start line names them)"
    )]
    NotFound { wanted: String },
    #[error("{name} in the recordings directory is not a regular file: it is not replayed")]
    NotAFile { name: String },
    #[error(transparent)]
    Io(StoreError),
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
    /// The recordings being written: never removed to make room (a user
    /// could otherwise start sessions to erase a running one's record),
    /// and each holds a whole maxSessionBytes of the total.
    live: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store {
            dir,
            live: Default::default(),
        }
    }

    /// The recording `name` is whole: it may be removed to make room.
    pub fn done(&self, name: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty recording for session `session` on `node`, after
    /// removing the oldest finished recordings until `max_total` holds
    /// them, a whole `max_session` for each one being written, and one for
    /// the new one; returns what was removed. Until [`Store::done`], the
    /// new one is live.
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
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let reserved = max_session.saturating_mul(live.len() as u64 + 1);
        let keep = max_total.checked_sub(reserved).ok_or(StoreError::Full {
            live: live.len(),
            max_session,
            max_total,
        })?;
        let removed = self.prune(keep, &live)?;
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
        live.insert(name.clone());
        Ok((file, name, removed))
    }

    /// The recording `wanted` names, opened for reading: a file name
    /// (`NODE_SESSION_UNIXTIME.cast`), or a session id, for the newest
    /// recording of that session on `node`. Returns the file and its name.
    pub fn open(&self, node: &str, wanted: &str) -> Result<(File, String), LookupError> {
        let name = match wanted.parse::<u64>() {
            Ok(id) => self.newest(node, id, wanted)?,
            Err(_) if is_plain_name(wanted) => wanted.to_owned(),
            Err(_) => return Err(LookupError::BadName(wanted.to_owned())),
        };
        let path = self.dir.join(&name);
        let not_found = || LookupError::NotFound {
            wanted: wanted.to_owned(),
        };
        // No link followed, and no wait on a FIFO put there: whatever is
        // not a regular file is refused once open.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => not_found(),
                Some(libc::ELOOP) => LookupError::NotAFile { name: name.clone() },
                _ => LookupError::Io(io_err("open", &path)(e)),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| LookupError::Io(io_err("read", &path)(e)))?;
        if !meta.is_file() {
            return Err(LookupError::NotAFile { name });
        }
        Ok((file, name))
    }

    /// The name of the newest recording of session `id` on `node`, by the
    /// time in its name.
    fn newest(&self, node: &str, id: u64, wanted: &str) -> Result<String, LookupError> {
        let prefix = format!("{node}_{id}_");
        let none = || LookupError::NotFound {
            wanted: format!("of session {wanted}"),
        };
        let list = |e| LookupError::Io(io_err("list", &self.dir)(e));
        let entries = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            // Nothing was ever recorded here.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(none()),
            Err(e) => return Err(list(e)),
        };
        let mut newest: Option<(u64, String)> = None;
        for e in entries {
            let e = e.map_err(list)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let at = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".cast"))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(at) = at
                && e.file_type().is_ok_and(|t| t.is_file())
                && newest.as_ref().is_none_or(|(t, _)| at > *t)
            {
                newest = Some((at, name));
            }
        }
        newest.map(|(_, name)| name).ok_or_else(none)
    }

    /// Removes the oldest finished recordings until those left hold at
    /// most `keep` bytes; the `live` ones are counted, never removed.
    fn prune(&self, keep: u64, live: &std::collections::HashSet<String>) -> Result<Vec<Removed>, StoreError> {
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
            if live.contains(&name) {
                continue;
            }
            let path = self.dir.join(&name);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            total -= size;
            removed.push(Removed { name, size });
        }
        Ok(removed)
    }
}

/// A name that can only be a file directly in the directory: no path
/// separator, no `..`, nothing hidden, and a recording's extension.
fn is_plain_name(name: &str) -> bool {
    name.len() > ".cast".len()
        && name.ends_with(".cast")
        && !name.starts_with('.')
        && !name.contains(['/', '\0'])
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_being_written_is_never_removed_and_holds_its_whole_share() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("sessions"));
        let (f, live, _) = store.create("n", 1, 100, 1000).unwrap();
        std::io::Write::write_all(&mut &f, &[b'x'; 900]).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH).unwrap();
        // The oldest, and over the total with the new one, but being
        // written: kept, and the second recording still fits its share.
        let (_, second, removed) = store.create("n", 2, 100, 1000).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert!(store.dir().join(&live).exists());
        // A third would need three shares of 100 of a total of 250.
        let e = store.create("n", 3, 100, 250).unwrap_err();
        assert!(matches!(e, StoreError::Full { live: 2, .. }), "{e}");
        // Once whole, the first may go to make room.
        store.done(&live);
        store.done(&second);
        let (_, _, removed) = store.create("n", 4, 100, 950).unwrap();
        assert_eq!(
            removed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            [live.as_str()]
        );
    }

    #[test]
    fn the_oldest_go_first_until_a_new_one_fits_and_the_directory_is_roots_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("sessions"));
        for (i, size) in [(1u64, 400usize), (2, 300), (3, 200)] {
            let (f, name, removed) = store.create("n", i, 0, u64::MAX).unwrap();
            store.done(&name);
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
        store.done(&name);
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

    /// A recording of session `id` made `at` (its name's time), holding
    /// `text`.
    fn recorded(store: &Store, id: u64, at: u64, text: &str) -> String {
        fs::create_dir_all(store.dir()).unwrap();
        let name = format!("n_{id}_{at}.cast");
        fs::write(store.dir().join(&name), text).unwrap();
        name
    }

    fn read(store: &Store, wanted: &str) -> Result<(String, String), LookupError> {
        let (mut f, name) = store.open("n", wanted)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        Ok((name, text))
    }

    #[test]
    fn an_id_opens_the_newest_recording_of_that_session_a_name_that_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("sessions"));
        assert!(
            matches!(read(&store, "7"), Err(LookupError::NotFound { .. })),
            "no directory yet: nothing recorded"
        );
        // Session ids start again at 1 when the agent restarts: the same id
        // at other times, and other ids that share its digits.
        let old = recorded(&store, 7, 1_700_000_000, "old");
        let new = recorded(&store, 7, 1_800_000_000, "new");
        recorded(&store, 77, 1_900_000_000, "other session");
        recorded(&store, 17, 1_900_000_000, "other session");
        fs::write(store.dir().join("m_7_1900000000.cast"), "other node").unwrap();
        assert_eq!(read(&store, "7").unwrap(), (new, "new".to_owned()));
        assert_eq!(read(&store, &old).unwrap(), (old, "old".to_owned()));
        let e = read(&store, "8").unwrap_err();
        assert!(
            matches!(e, LookupError::NotFound { .. }) && e.to_string().contains("recording.name"),
            "{e}"
        );
        let e = read(&store, "n_7_1.cast").unwrap_err();
        assert!(matches!(e, LookupError::NotFound { .. }), "{e}");
    }

    #[test]
    fn only_a_plain_file_directly_in_the_directory_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("sessions"));
        recorded(&store, 1, 1, "ok");
        fs::write(tmp.path().join("secret.cast"), "secret").unwrap();
        for bad in [
            "../secret.cast",
            "../etc/passwd",
            "/etc/passwd",
            "sub/n_1_1.cast",
            "..cast",
            ".cast",
            ".hidden.cast",
            "n_1_1.txt",
            "",
            "-1",
            "n_1_1.cast\0",
        ] {
            let e = read(&store, bad).unwrap_err();
            assert!(matches!(e, LookupError::BadName(_)), "{bad:?}: {e}");
        }
        // A link, even to another recording, and a FIFO (which would block
        // an open that waited for a writer) are not regular files.
        std::os::unix::fs::symlink("n_1_1.cast", store.dir().join("link.cast")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.cast"), store.dir().join("n_9_9.cast")).unwrap();
        mkfifo(&store.dir().join("fifo.cast"));
        fs::create_dir(store.dir().join("dir.cast")).unwrap();
        for odd in ["link.cast", "fifo.cast", "dir.cast"] {
            let e = read(&store, odd).unwrap_err();
            assert!(matches!(e, LookupError::NotAFile { .. }), "{odd}: {e}");
        }
        assert!(
            matches!(read(&store, "9"), Err(LookupError::NotFound { .. })),
            "a session id never picks a link"
        );
        assert_eq!(read(&store, "n_1_1.cast").unwrap().1, "ok");
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success(), "mkfifo {}", path.display());
    }
}
