//! The sessions running now, for `kubectl ns sessions`: each entry is put
//! in when its session starts and taken out by a guard's `Drop` when it
//! ends, whichever way it ends, so none outlives its session. The registry
//! holds at most the agent's `--max-sessions` entries, as many as there
//! are session slots, so what it holds is bounded.
//!
//! Each entry has what the session is (who, what, since when), the bytes
//! it has moved so far, and a kill switch its session loop watches.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::access::audit;
use crate::access::identity::{Identity, Method};

/// What a session is, as it is listed: fixed at its start.
#[derive(Debug, Clone)]
pub struct About {
    /// The id the audit trail and the log use.
    pub id: u64,
    pub who: Identity,
    pub method: Method,
    pub target: audit::Target,
    pub argv: Vec<String>,
    /// The namespace kinds entered.
    pub namespaces: Vec<String>,
    pub tools: &'static str,
    pub tty: bool,
    /// RFC 3339, UTC.
    pub start_time: String,
    /// The recording's file name, when the policy records the session.
    pub recording: Option<String>,
}

/// A session's moving parts: its byte counts, which its I/O adds to as it
/// goes, and its kill switch.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Who ended the session, once someone has.
    killed_by: watch::Sender<Option<String>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            started: Instant::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            killed_by: watch::Sender::new(None),
        }
    }
}

impl Live {
    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    pub fn duration(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the session, saying who ended it; `false` when someone already
    /// had (the first one is who the session is told of).
    pub fn kill(&self, by: &str) -> bool {
        self.killed_by.send_if_modified(|k| {
            if k.is_some() {
                return false;
            }
            *k = Some(by.to_owned());
            true
        })
    }

    /// Resolves once the session is killed, with who killed it.
    pub async fn killed(&self) -> String {
        let mut rx = self.killed_by.subscribe();
        // The guard the wait returns is not held past this line: it is not
        // Send, and the session's future must be.
        let by = rx.wait_for(Option::is_some).await.map(|by| by.clone());
        match by {
            Ok(by) => by.unwrap_or_default(),
            // The sender lives in `self`, borrowed for as long as this waits.
            Err(_) => std::future::pending().await,
        }
    }
}

/// One running session.
#[derive(Debug)]
pub struct Entry {
    pub about: About,
    pub live: Arc<Live>,
}

/// A snapshot of a session, for a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub about: About,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl From<&Entry> for Listed {
    fn from(e: &Entry) -> Listed {
        Listed {
            about: e.about.clone(),
            duration: e.live.duration(),
            bytes_in: e.live.bytes_in(),
            bytes_out: e.live.bytes_out(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("the session registry already holds its limit of {0} sessions")]
    Full(usize),
    #[error("session {0} is already registered")]
    Taken(u64),
}

/// The sessions running on this agent.
#[derive(Debug)]
pub struct Registry {
    capacity: usize,
    entries: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

impl Registry {
    /// A registry of at most `capacity` sessions: the agent's
    /// `--max-sessions`.
    pub fn new(capacity: u32) -> Arc<Registry> {
        Arc::new(Registry {
            capacity: capacity as usize,
            entries: Mutex::new(BTreeMap::new()),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Entry>>> {
        // A panic elsewhere while it was held leaves the map whole: every
        // change is one insert or one remove.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a starting session in; it stays until the returned guard is
    /// dropped.
    pub fn insert(self: &Arc<Self>, about: About) -> Result<Registered, RegistryError> {
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            return Err(RegistryError::Full(self.capacity));
        }
        let id = about.id;
        if entries.contains_key(&id) {
            return Err(RegistryError::Taken(id));
        }
        let entry = Arc::new(Entry {
            about,
            live: Arc::new(Live::default()),
        });
        entries.insert(id, entry.clone());
        Ok(Registered {
            registry: self.clone(),
            entry,
        })
    }

    /// Every session running now, in the order they started.
    pub fn list(&self) -> Vec<Listed> {
        self.entries().values().map(|e| Listed::from(&**e)).collect()
    }

    /// The running session `id`, if any.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        self.entries().get(&id).cloned()
    }
}

/// A session's place in the registry, given up when dropped.
#[derive(Debug)]
pub struct Registered {
    registry: Arc<Registry>,
    entry: Arc<Entry>,
}

impl Registered {
    /// The session's counters and kill switch, for its I/O and its loop.
    pub fn live(&self) -> Arc<Live> {
        self.entry.live.clone()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.entries().remove(&self.entry.about.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(id: u64, user: &str) -> About {
        About {
            id,
            who: Identity {
                username: user.into(),
                uid: format!("{user}-uid"),
                groups: Vec::new(),
                extra: Default::default(),
            },
            method: Method::Token,
            target: audit::Target {
                requested: "node".into(),
                ..Default::default()
            },
            argv: vec!["sleep".into(), "60".into()],
            namespaces: vec!["net".into()],
            tools: "node",
            tty: false,
            recording: None,
            start_time: audit::now(),
        }
    }

    #[test]
    fn it_holds_no_more_than_its_limit_and_frees_a_place_when_a_session_ends() {
        let r = Registry::new(2);
        let a = r.insert(about(1, "alice")).unwrap();
        let b = r.insert(about(2, "bob")).unwrap();
        assert_eq!(r.insert(about(3, "carol")).unwrap_err(), RegistryError::Full(2));
        drop(a);
        let c = r.insert(about(3, "carol")).unwrap();
        let ids: Vec<u64> = r.list().iter().map(|l| l.about.id).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(r.insert(about(2, "dave")).unwrap_err(), RegistryError::Full(2));
        drop((b, c));
        assert!(r.list().is_empty());
    }

    #[test]
    fn an_id_is_registered_once() {
        let r = Registry::new(4);
        let _a = r.insert(about(7, "alice")).unwrap();
        assert_eq!(r.insert(about(7, "bob")).unwrap_err(), RegistryError::Taken(7));
        assert_eq!(r.get(7).unwrap().about.who.username, "alice");
    }

    #[tokio::test]
    async fn the_entry_goes_on_every_end_even_a_panicking_session() {
        let r = Registry::new(4);
        let guard = r.insert(about(1, "alice")).unwrap();
        // A session task that panics unwinds through its guard.
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("the session task failed");
        });
        assert!(task.await.is_err());
        assert!(r.list().is_empty(), "{:?}", r.list());
        // One that is aborted (its future dropped) lets go as well.
        let guard = r.insert(about(2, "alice")).unwrap();
        let task = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        task.abort();
        let _ = task.await;
        assert!(r.list().is_empty(), "{:?}", r.list());
    }

    #[tokio::test]
    async fn a_kill_reaches_the_session_with_who_ended_it_and_the_first_one_counts() {
        let r = Registry::new(4);
        let guard = r.insert(about(1, "alice")).unwrap();
        let live = guard.live();
        // The session's loop, waiting for its end.
        let session = tokio::spawn(async move {
            let by = live.killed().await;
            drop(guard);
            by
        });
        tokio::task::yield_now().await;
        let entry = r.get(1).unwrap();
        assert!(entry.live.kill("carol"));
        assert!(!entry.live.kill("dave"), "already ending");
        let by = tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session saw the kill")
            .unwrap();
        assert_eq!(by, "carol");
        assert!(r.get(1).is_none());
        // Killed before its loop looked: still seen.
        let guard = r.insert(about(2, "alice")).unwrap();
        r.get(2).unwrap().live.kill("carol");
        let by = tokio::time::timeout(Duration::from_secs(5), guard.live().killed()).await;
        assert_eq!(by.as_deref(), Ok("carol"));
    }

    #[test]
    fn a_listing_carries_the_live_counts() {
        let r = Registry::new(1);
        let guard = r.insert(about(1, "alice")).unwrap();
        guard.live().add_in(3);
        guard.live().add_out(10);
        guard.live().add_out(5);
        let l = &r.list()[0];
        assert_eq!((l.bytes_in, l.bytes_out), (3, 15));
        assert_eq!(l.about.argv, ["sleep", "60"]);
    }
}
