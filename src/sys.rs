//! The crate's only `unsafe` code: memory maps and a few libc calls.
//!
//! # Safety
//! A memory map of a file is only sound while nobody truncates the file underneath it; a
//! backup source can be modified at any time. We accept that risk the way every mmap-based
//! archiver does, but limit it: maps are read-only and private, used only for files at least
//! [`MMAP_THRESHOLD`] bytes long, and a concurrent truncation surfaces as SIGBUS only for
//! files being rewritten in place, which a contentstore (immutable files) and a finished dump
//! never are. Everything else here is a plain syscall wrapper with no memory effects.

use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::path::Path;

/// Files at least this large are memory-mapped and chunked in parallel batches.
pub const MMAP_THRESHOLD: u64 = 8 * 1024 * 1024;

/// Maps `file` read-only. See the module's safety note.
pub fn map(file: &File, path: &Path) -> crate::Result<Mmap> {
    // SAFETY: read-only private map; see the module doc for the truncation caveat.
    let m = unsafe { MmapOptions::new().map(file) };
    let m = m.map_err(|source| crate::Error::Io { path: path.to_path_buf(), source })?;
    let _ = m.advise(memmap2::Advice::Sequential);
    Ok(m)
}

/// Tells the kernel we are done with a range of a map, so a 50 GB dump does not count as
/// 50 GB of resident memory. Best effort.
pub fn release(map: &Mmap, offset: usize, len: usize) {
    let page = 4096;
    let start = offset.div_ceil(page) * page;
    let end = (offset + len) / page * page;
    if end > start {
        // SAFETY: DONTNEED on a read-only private file map only drops cached pages; later
        // reads fault them back in from the file. We never hold slices into the range after
        // releasing it.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
    }
}

/// Is a process with this pid alive on this host?
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill(pid, 0) sends nothing; it only checks existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Is the effective user root (then restore also restores ownership)?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The effective uid and gid, recorded as the owner of captured command output.
pub fn ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid have no preconditions.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether `path` (a directory of the repository) can't be written by this process: a
/// read-only mount (`EROFS`) or missing permission. A repository on write-protected media is
/// still read: restore, dump, mount, ls and verify open it read-only.
pub fn read_only(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: access() only reads the NUL-terminated path we own for the call's duration.
    let r = unsafe { libc::access(c.as_ptr(), libc::W_OK) };
    r != 0 && matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EROFS | libc::EACCES | libc::EPERM))
}

/// The kind of filesystem `path` is on, from `statfs(2)`'s `f_type`, when it is one of the
/// kernel's pseudo filesystems whose files are not data (their sizes lie, some stream without
/// end): `Some(name)`. `None` for ordinary filesystems and when `statfs` fails.
pub fn pseudo_filesystem(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes only into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // Magic numbers from linux/magic.h.
    const KINDS: &[(i64, &str)] = &[
        (0x9fa0, "proc"),
        (0x6265_6572, "sysfs"),
        // devtmpfs reports tmpfs's magic and can't be told apart; its entries are device
        // nodes, which the walker does not read anyway. 0x1373 is the old devfs.
        (0x1373, "devfs"),
        (0x0027_e0eb, "cgroup"),
        (0x6367_7270, "cgroup2"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7363_6673, "securityfs"),
        (0x6165_676c, "pstore"),
        (0xcafe_4a11, "bpf"),
        (0x6265_6570, "configfs"),
        (0x6573_5543, "fusectl"),
        (0x6e73_6673, "nsfs"),
        (0x4249_4e4d, "binfmt_misc"),
        (0xf97c_ff8c, "selinuxfs"),
        (0x1cd1, "devpts"),
        (0xde5e_81e4, "efivarfs"),
    ];
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64;
    KINDS.iter().find(|(m, _)| *m == t).map(|&(_, n)| n)
}
