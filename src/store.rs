//! Durable file operations on the local repository directory.
//!
//! Guarantees the rest of the crate relies on: `write_atomic` leaves either the old state or
//! the complete new file under its final name, never a partial one, and the rename is durable
//! (parent directory fsynced) when it returns; a file read after `write_atomic` returned sees
//! the new bytes.
//!
//! Everything coffer creates in a repository or a cache is owner-only (directories 0700,
//! files 0600, as restic and Borg do): a repository holds the whole database dump, and the
//! umask of a cron job is no place to leave that to. Existing directories keep their mode.

use crate::error::{IoContext, Result};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A temporary file in `tmp/` whose writer is not known to be alive is removed once it is this
/// old (a pack or manifest is written in seconds; leases go stale after 30 minutes).
pub const TMP_ABANDONED: Duration = Duration::from_secs(3600);

/// A fresh name for a temporary file in `tmp/`: `<pid>@<host>@<random>.tmp`, so whoever
/// cleans `tmp/` can tell whose it is, even on a filesystem shared by several hosts.
pub fn tmp_name() -> String {
    let mut rnd = [0u8; 8];
    let _ = getrandom::getrandom(&mut rnd);
    format!("{}@{}@{:016x}.tmp", std::process::id(), host_tag(&crate::lock::hostname()), u64::from_le_bytes(rnd))
}

/// A host name as it appears in a temporary file's name.
fn host_tag(host: &str) -> String {
    host.replace(['@', '/'], "_")
}

/// The pid and host a [`tmp_name`] names; just the pid for the older `<pid>-<random>.tmp`.
pub fn tmp_owner(name: &str) -> Option<(u32, Option<&str>)> {
    let mut parts = name.strip_suffix(".tmp")?.split('@');
    let first = parts.next()?;
    match (parts.next(), parts.next()) {
        (Some(host), Some(_)) => Some((first.parse().ok()?, Some(host))),
        _ => Some((first.split('-').next()?.parse().ok()?, None)),
    }
}

/// Removes the temporary files of writers that are gone: on this host, those whose process is
/// dead; from another host or of unknown origin, those older than [`TMP_ABANDONED`], because
/// a pid means nothing across hosts. Best effort; returns how many were removed.
pub fn clean_tmp_dir(dir: &Path, host: &str, now: SystemTime) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some((pid, owner)) = name.to_str().and_then(tmp_owner) else { continue };
        let gone = if owner == Some(host_tag(host).as_str()) {
            pid != std::process::id() && !crate::sys::pid_alive(pid)
        } else {
            let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
            age.is_some_and(|a| a >= TMP_ABANDONED)
        };
        if gone && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// fsyncs a directory so renames and creations inside it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).ctx(dir)?.sync_all().ctx(dir)
}

/// Creates `dir` and any missing parents, owner-only.
pub fn create_private_dirs(dir: &Path) -> Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).ctx(dir)
}

/// Creates (or truncates) the file `path` for writing, owner-only when it is new.
pub fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).ctx(path)
}

/// Makes sure the file `path` exists, creating it empty and owner-only: SQLite then opens
/// it as it is, and gives its `-wal` and `-shm` files the same mode.
pub fn touch_private(path: &Path) -> Result<()> {
    OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).ctx(path).map(drop)
}

/// Writes `bytes` to `path` through a temporary file in `tmp_dir` (same filesystem), fsync,
/// rename, fsync of the parent.
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(tmp_name());
    let result = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes).ctx(&tmp)?;
        f.sync_all().ctx(&tmp)?;
        drop(f);
        std::fs::rename(&tmp, path).ctx(path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_say_whose_they_are() {
        let n = tmp_name();
        let (pid, host) = tmp_owner(&n).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(host, Some(host_tag(&crate::lock::hostname()).as_str()));
        assert_eq!(tmp_owner("123-00ff00ff00ff00ff.tmp"), Some((123, None)));
        assert_eq!(tmp_owner("7@db-2.example@abc.tmp"), Some((7, Some("db-2.example"))));
        assert_eq!(tmp_owner("notes.txt"), None);
        assert_eq!(tmp_owner("x@h@r.tmp"), None);
    }

    #[test]
    fn only_temporary_files_of_writers_known_gone_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dead = u32::MAX / 2 + 12345; // above pid_max: no such process
        let me = std::process::id();
        let files = [
            (format!("{dead}@here@a.tmp"), 0, false),  // this host, dead pid: removed
            (format!("{me}@here@b.tmp"), 2, true),     // this process: kept, even old
            (format!("{dead}@there@c.tmp"), 0, true),  // another host, fresh: kept
            (format!("{dead}@there@d.tmp"), 2, false), // another host, abandoned: removed
            (format!("{dead}-e.tmp"), 0, true),        // old format, fresh: kept
            (format!("{dead}-f.tmp"), 2, false),       // old format, abandoned: removed
            ("README".to_string(), 2, true),           // not a temporary file
        ];
        let now = SystemTime::now();
        for (name, hours, _) in &files {
            let p = d.join(name);
            std::fs::write(&p, b"x").unwrap();
            let t = filetime::FileTime::from_system_time(now - Duration::from_secs(hours * 3600));
            filetime::set_file_mtime(&p, t).unwrap();
        }
        assert_eq!(clean_tmp_dir(d, "here", now), 3);
        for (name, _, kept) in &files {
            assert_eq!(d.join(name).exists(), *kept, "{name}");
        }
    }
}
