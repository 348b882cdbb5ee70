//! Restoring what is more than bytes in a regular file: fifos and devices (`mknodat`), hard
//! links (`linkat`) and extended attributes (POSIX ACLs are two of them).
//!
//! Each function works relative to a directory handle and never follows a symlink at the
//! last component (`mknodat` and `linkat` create, they don't follow; attributes are set
//! through the open file, or with `lsetxattr` on a path whose last component restore just
//! created), so they fit an `openat`-style restore unchanged.
//!
//! What can't be restored (a device node when not root, an attribute the target filesystem
//! or the user's privileges refuse) is an error or a message returned to the caller, which
//! reports it: nothing is dropped in silence.

use crate::tree::{Node, NodeKind};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, FileType, Mode, XattrFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::path::Path;

/// What the node is, for messages: `fifo`, `character device 1:3`.
pub fn describe(n: &Node) -> String {
    let dev = || format!("{}:{}", rustix::fs::major(n.rdev), rustix::fs::minor(n.rdev));
    match n.kind {
        NodeKind::Fifo => "fifo".into(),
        NodeKind::CharDevice => format!("character device {}", dev()),
        NodeKind::BlockDevice => format!("block device {}", dev()),
        NodeKind::File => "file".into(),
        NodeKind::Dir => "directory".into(),
        NodeKind::Symlink => "symlink".into(),
    }
}

/// Creates the fifo or device node `name` in `dir`, mode 0600 until its metadata is set.
/// Creating a device takes root (`CAP_MKNOD`); the error then says so.
pub fn create_special(dir: BorrowedFd, name: &OsStr, n: &Node) -> std::io::Result<()> {
    let ft = match n.kind {
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::CharDevice => FileType::CharacterDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        _ => return Err(std::io::Error::other(format!("{} is not a special file", describe(n)))),
    };
    let rdev = if n.kind == NodeKind::Fifo { 0 } else { n.rdev };
    rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(0o600), rdev).map_err(|e| {
        let hint =
            if e == Errno::PERM && n.kind != NodeKind::Fifo { " (only root can create device nodes)" } else { "" };
        std::io::Error::new(std::io::Error::from(e).kind(), format!("{} not created: {e}{hint}", describe(n)))
    })
}

/// Whether what is on disk already (`statat` without following) is the node's special file
/// (`--resume` keeps it).
pub fn is_same_special(st: &rustix::fs::Stat, n: &Node) -> bool {
    let ft = FileType::from_raw_mode(st.st_mode);
    match n.kind {
        NodeKind::Fifo => ft == FileType::Fifo,
        NodeKind::CharDevice => ft == FileType::CharacterDevice && st.st_rdev == n.rdev,
        NodeKind::BlockDevice => ft == FileType::BlockDevice && st.st_rdev == n.rdev,
        _ => false,
    }
}

/// Makes `new` (in `new_dir`) another name of `old` (in `old_dir`). A symlink `old` is linked
/// itself, never followed.
pub fn link_hard(old_dir: BorrowedFd, old: &OsStr, new_dir: BorrowedFd, new: &OsStr) -> std::io::Result<()> {
    rustix::fs::linkat(old_dir, old, new_dir, new, AtFlags::empty()).map_err(Into::into)
}

/// Sets the node's extended attributes on an open file. Returns what could not be set, one
/// message per cause (empty when all were set).
pub fn apply_xattrs(fd: impl AsFd, n: &Node) -> Vec<String> {
    let fd = fd.as_fd();
    set_all(n, |name, value| rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()))
}

/// [`apply_xattrs`] by path, for what can't be opened for it (symlinks, fifos, devices) and
/// for directories. The last component is not followed.
pub fn apply_xattrs_path(path: &Path, n: &Node) -> Vec<String> {
    set_all(n, |name, value| rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()))
}

fn set_all(n: &Node, mut set: impl FnMut(&[u8], &[u8]) -> rustix::io::Result<()>) -> Vec<String> {
    // Attributes refused for one reason are reported together: a target without attribute
    // support refuses them all.
    let mut failed: Vec<(Errno, Vec<String>)> = Vec::new();
    for x in &n.xattrs {
        if let Err(e) = set(&x.name, &x.value) {
            let name = String::from_utf8_lossy(&x.name).into_owned();
            match failed.iter_mut().find(|(f, _)| *f == e) {
                Some((_, names)) => names.push(name),
                None => failed.push((e, vec![name])),
            }
        }
    }
    failed
        .into_iter()
        .map(|(e, names)| {
            let hint = match e {
                Errno::NOTSUP => " (the target filesystem does not support them)",
                Errno::PERM | Errno::ACCESS => " (trusted.* and security.* attributes need root)",
                _ => "",
            };
            let what = if names.len() == 1 { "extended attribute" } else { "extended attributes" };
            format!("{what} {} not restored: {e}{hint}", names.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Xattr;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn refused_attributes_are_reported_by_cause() {
        let x = |name: &str| Xattr { name: name.as_bytes().to_vec(), value: b"v".to_vec() };
        let n = Node { xattrs: vec![x("security.a"), x("trusted.b"), x("user.c")], ..Node::default() };
        let msgs = set_all(&n, |name, _| if name.starts_with(b"user.") { Ok(()) } else { Err(Errno::PERM) });
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0].contains("security.a, trusted.b") && msgs[0].contains("need root"), "{msgs:?}");
        assert!(set_all(&n, |_, _| Ok(())).is_empty());
    }

    #[test]
    fn fifos_are_created_relative_to_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let n = Node { kind: NodeKind::Fifo, ..Node::default() };
        create_special(dir.as_fd(), OsStr::new("p"), &n).unwrap();
        let m = std::fs::symlink_metadata(d.path().join("p")).unwrap();
        assert!(is_same_special(&rustix::fs::stat(d.path().join("p")).unwrap(), &n));
        link_hard(dir.as_fd(), OsStr::new("p"), dir.as_fd(), OsStr::new("q")).unwrap();
        let q = std::fs::symlink_metadata(d.path().join("q")).unwrap();
        assert_eq!((q.ino(), q.nlink()), (m.ino(), 2));
    }
}
