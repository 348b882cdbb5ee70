//! Repository leases (`locks` objects, through [`crate::storage`]): shared for backups and
//! readers, exclusive for maintenance.
//!
//! A lease is a small enveloped JSON file (`COFFRLCK`, version 1) naming host, pid, kind,
//! start and last refresh; a background thread refreshes it while held. A lease is stale when
//! its process is dead on this host or its refresh is older than [`STALE_AFTER`]; stale leases
//! are reclaimed with a message. Acquisition writes our lease first and then looks for
//! conflicting ones, so two racing exclusive takers both back off rather than both proceed.

use crate::envelope;
use crate::error::{Error, Result};
use crate::storage::{object_path, Kind, Storage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MAGIC: &[u8; 8] = b"COFFRLCK";
pub const VERSION: u32 = 1;
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub kind: LeaseKind,
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub refreshed: u64,
}

impl LeaseInfo {
    pub fn encode(&self) -> Vec<u8> {
        envelope::encode(MAGIC, VERSION, &serde_json::to_vec(self).expect("lease serialises"))
    }
    pub fn decode(path: &Path, b: &[u8]) -> Result<LeaseInfo> {
        let (_, p) = envelope::decode(path, "lease", MAGIC, 1, VERSION, b)?;
        serde_json::from_slice(p).map_err(|e| Error::corrupt(path, envelope::HEADER_LEN as u64, format!("lease: {e}")))
    }
    fn describe(&self) -> String {
        format!(
            "{:?} lease held by {} (pid {} on {}, started {}s ago)",
            self.kind,
            self.command,
            self.pid,
            self.host,
            now_secs().saturating_sub(self.started)
        )
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn hostname() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

/// Why a lease is stale, or `None` if it is live.
pub fn stale_reason(l: &LeaseInfo, host: &str) -> Option<String> {
    if l.host == host && !crate::sys::pid_alive(l.pid) {
        return Some(format!("process {} on this host is gone", l.pid));
    }
    let age = now_secs().saturating_sub(l.refreshed);
    if age > STALE_AFTER.as_secs() {
        return Some(format!("not refreshed for {age}s"));
    }
    None
}

/// A held lease; released on drop.
pub struct Lease {
    storage: Arc<dyn Storage>,
    name: String,
    stop: Arc<AtomicBool>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

/// One lease object: its name, how messages show it, and its decoded content (an
/// undecodable one as the error).
pub struct Listed {
    pub name: String,
    pub shown: PathBuf,
    pub info: Result<LeaseInfo>,
}

/// Every lease in the repository with its decoded content.
pub fn list(storage: &dyn Storage) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for o in storage.list(Kind::Locks)? {
        if !o.name.ends_with(".lease") {
            continue;
        }
        let shown = PathBuf::from(object_path(storage, Kind::Locks, &o.name));
        let info = match storage.read(Kind::Locks, &o.name, None) {
            Ok(b) => LeaseInfo::decode(&shown, &b),
            // Released between listing and reading.
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => Err(e),
        };
        out.push(Listed { name: o.name, shown, info });
    }
    Ok(out)
}

/// Removes stale leases; returns messages describing what was removed.
pub fn remove_stale(storage: &dyn Storage) -> Result<Vec<String>> {
    let host = hostname();
    let mut msgs = Vec::new();
    for l in list(storage)? {
        let reason = match &l.info {
            Ok(i) => stale_reason(i, &host),
            // A lease that is not readable as one is a leftover of a crash mid-write.
            Err(e) => Some(format!("unreadable ({e})")),
        };
        if let Some(r) = reason {
            if storage.remove(Kind::Locks, &l.name).is_ok() {
                msgs.push(format!("removed stale lease {}: {r}", l.shown.display()));
            }
        }
    }
    Ok(msgs)
}

/// Whether `e` says the device is full (the lease could not be written).
fn no_space(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } | Error::Storage { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}

impl Lease {
    /// The lease of a command that only reads (restore, dump, mount, ls, verify): shared, so
    /// a prune can't delete packs under it. A repository on read-only storage can't hold
    /// leases, and can't be pruned either, so it is read without one (said through `notify`).
    pub fn acquire_reader(
        repo: &crate::repo::Repo,
        command: &str,
        notify: &mut dyn FnMut(String),
    ) -> Result<Option<Lease>> {
        if crate::sys::read_only(&repo.locks_dir()) {
            notify(format!("{} is read-only: reading it without a lease", repo.root.display()));
            return Ok(None);
        }
        match Lease::acquire(repo.storage.clone(), LeaseKind::Shared, command, notify) {
            // A full disk can't hold a lease, and can't be pruned (prune must write its own
            // lease and commit to the catalog before it deletes anything): read without one.
            Err(e) if no_space(&e) => {
                notify(format!("no space left on device for the lease ({e}): reading without a lease"));
                Ok(None)
            }
            r => r.map(Some),
        }
    }

    /// Takes a lease of `kind`, reclaiming stale ones (their removal is reported through
    /// `notify`).
    pub fn acquire(
        storage: Arc<dyn Storage>,
        kind: LeaseKind,
        command: &str,
        notify: &mut dyn FnMut(String),
    ) -> Result<Lease> {
        for m in remove_stale(&*storage)? {
            notify(m);
        }
        let host = hostname();
        let now = now_secs();
        let info = LeaseInfo {
            kind,
            host: host.clone(),
            pid: std::process::id(),
            command: command.into(),
            started: now,
            refreshed: now,
        };
        let mut rnd = [0u8; 8];
        let _ = getrandom::getrandom(&mut rnd);
        let name = format!(
            "{}-{}-{:016x}.lease",
            match kind {
                LeaseKind::Shared => "shared",
                LeaseKind::Exclusive => "exclusive",
            },
            std::process::id(),
            u64::from_le_bytes(rnd)
        );
        let listed = match storage.put(Kind::Locks, &name, &info.encode()).and_then(|()| list(&*storage)) {
            Ok(l) => l,
            Err(e) => {
                // The put may have landed with its reply lost: a lease left behind would block
                // every other command until it is stale.
                let _ = storage.remove(Kind::Locks, &name);
                return Err(e);
            }
        };
        for l in listed {
            if l.name == name {
                continue;
            }
            let Ok(other) = l.info else { continue };
            let conflict = kind == LeaseKind::Exclusive || other.kind == LeaseKind::Exclusive;
            if conflict && stale_reason(&other, &host).is_none() {
                let _ = storage.remove(Kind::Locks, &name);
                return Err(Error::Locked(format!(
                    "{} ({}); if that process is gone, run `coffer unlock`",
                    other.describe(),
                    l.shown.display()
                )));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (stop, name, storage) = (stop.clone(), name.clone(), storage.clone());
            std::thread::spawn(move || {
                let mut last = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(500));
                    if last.elapsed() >= REFRESH_EVERY && !stop.load(Ordering::Relaxed) {
                        let mut i = info.clone();
                        i.refreshed = now_secs();
                        let _ = storage.put(Kind::Locks, &name, &i.encode());
                        last = std::time::Instant::now();
                    }
                }
            })
        };
        Ok(Lease { storage, name, stop, refresher: Some(refresher) })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.refresher.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let _ = self.storage.remove(Kind::Locks, &self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lease_round_trip(pid in any::<u32>(), started in any::<u64>(), refreshed in any::<u64>(), host in "[a-z0-9.-]{0,20}", excl in any::<bool>()) {
            let l = LeaseInfo { kind: if excl { LeaseKind::Exclusive } else { LeaseKind::Shared }, host, pid, command: "backup".into(), started, refreshed };
            prop_assert_eq!(LeaseInfo::decode(Path::new("l"), &l.encode()).unwrap(), l);
        }

        #[test]
        fn lease_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LeaseInfo::decode(Path::new("l"), &bytes);
            // Also with a valid envelope around garbage JSON.
            let _ = LeaseInfo::decode(Path::new("l"), &envelope::encode(MAGIC, VERSION, &bytes));
        }
    }

    fn repo() -> Arc<dyn Storage> {
        Arc::new(crate::storage::MemStorage::new())
    }

    #[test]
    fn shared_leases_coexist_and_exclusive_conflicts() {
        let d = repo();
        let mut quiet = |_m: String| {};
        let a = Lease::acquire(d.clone(), LeaseKind::Shared, "backup", &mut quiet).unwrap();
        let _b = Lease::acquire(d.clone(), LeaseKind::Shared, "backup", &mut quiet).unwrap();
        let err = Lease::acquire(d.clone(), LeaseKind::Exclusive, "prune", &mut quiet).err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Locked);
        // The refused exclusive lease was taken back.
        assert_eq!(list(&*d).unwrap().len(), 2);
        drop(a);
        assert_eq!(list(&*d).unwrap().len(), 1);
    }

    #[test]
    fn lease_of_dead_process_is_reclaimed() {
        let d = repo();
        // A pid that cannot exist (above pid_max), on this host: stale.
        let dead = LeaseInfo {
            kind: LeaseKind::Exclusive,
            host: hostname(),
            pid: 999_999_999,
            command: "prune".into(),
            started: now_secs(),
            refreshed: now_secs(),
        };
        d.put(Kind::Locks, "x.lease", &dead.encode()).unwrap();
        let mut msgs = Vec::new();
        let _l = Lease::acquire(d.clone(), LeaseKind::Shared, "backup", &mut |m| msgs.push(m)).unwrap();
        assert!(msgs.iter().any(|m| m.contains("999999999")), "{msgs:?}");
        assert_eq!(d.size(Kind::Locks, "x.lease").unwrap(), None, "the stale lease is gone");
    }
}
