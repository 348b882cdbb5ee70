//! Tree blobs: the sorted listing of one directory.
//!
//! A tree is encoded deterministically (entries sorted by name bytes, fixed field order,
//! postcard varints), so an unchanged directory encodes to the same bytes, gets the same id,
//! and is stored once however many sets name it. Trees are stored in packs as blobs of kind
//! `Tree`. Blob layout: `"CTRE" | version u16 | postcard(Tree)`; the blob's id (keyed BLAKE3)
//! is its checksum.
//!
//! Version 2 adds special files (fifos, devices), hard-link groups and extended attributes.
//! A tree is written in the lowest version that can express it: a directory with none of
//! these encodes to the same version-1 bytes as before, so upgrading coffer does not change
//! the ids of unchanged trees. Both versions are read.

use crate::error::{Error, Result};
use crate::id::{ChunkId, Id, TreeId};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MAGIC: &[u8; 4] = b"CTRE";
/// The newest tree version written and read.
pub const VERSION: u16 = 2;

/// Kernel limits (Linux `XATTR_NAME_MAX`, `XATTR_SIZE_MAX`, `XATTR_LIST_MAX`): no source can
/// have larger attributes, so a tree that claims them is damaged or hostile.
pub const XATTR_NAME_MAX: usize = 255;
pub const XATTR_VALUE_MAX: usize = 64 * 1024;
/// Bound on the names of one node's attributes together, each counted with its NUL.
pub const XATTR_LIST_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    #[default]
    File,
    Dir,
    Symlink,
    /// Version 2: a named pipe.
    Fifo,
    /// Version 2: a character device; `rdev` is its device number.
    CharDevice,
    /// Version 2: a block device; `rdev` is its device number.
    BlockDevice,
}

/// One extended attribute (POSIX ACLs are the attributes `system.posix_acl_access` and
/// `system.posix_acl_default`). Raw bytes: neither names nor values need be UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A chunk of a file's content: its id and raw length (lengths let readers seek without the
/// index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: [u8; 32],
    pub len: u32,
}

impl ChunkRef {
    pub fn new(id: ChunkId, len: u32) -> ChunkRef {
        ChunkRef { id: *id.as_bytes(), len }
    }
    pub fn chunk_id(&self) -> ChunkId {
        ChunkId(Id(self.id))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The name's raw bytes (Unix names need not be UTF-8).
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits (and setuid/setgid/sticky), without the file-type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// File size in bytes (0 for directories; the target length for symlinks).
    pub size: u64,
    /// File content, in order. Empty for empty files, directories and symlinks.
    pub content: Vec<ChunkRef>,
    /// Directory: the subtree's id.
    pub subtree: Option<[u8; 32]>,
    /// Symlink: the target's raw bytes.
    pub target: Option<Vec<u8>>,
    /// Version 2. Character and block devices: the device number (`st_rdev`); 0 otherwise.
    pub rdev: u64,
    /// Version 2. Hard links: nodes of one component with the same `link` are names of one
    /// inode (each node still carries the full content, so any one of them restores alone).
    /// Never set on directories.
    pub link: Option<u64>,
    /// Version 2. Extended attributes, sorted by name, names unique.
    pub xattrs: Vec<Xattr>,
}

/// A node as version 1 stores it (no special files, links or attributes).
#[derive(Serialize, Deserialize)]
struct NodeV1 {
    name: Vec<u8>,
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    size: u64,
    content: Vec<ChunkRef>,
    subtree: Option<[u8; 32]>,
    target: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct TreeV1 {
    nodes: Vec<NodeV1>,
}

impl From<NodeV1> for Node {
    fn from(n: NodeV1) -> Node {
        Node {
            name: n.name,
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime_ns: n.mtime_ns,
            size: n.size,
            content: n.content,
            subtree: n.subtree,
            target: n.target,
            ..Node::default()
        }
    }
}

impl Node {
    pub fn subtree_id(&self) -> Option<TreeId> {
        self.subtree.map(|b| TreeId(Id(b)))
    }
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
    /// Whether the node needs tree version 2.
    fn needs_v2(&self) -> bool {
        !matches!(self.kind, NodeKind::File | NodeKind::Dir | NodeKind::Symlink)
            || self.rdev != 0
            || self.link.is_some()
            || !self.xattrs.is_empty()
    }
    fn to_v1(&self) -> NodeV1 {
        NodeV1 {
            name: self.name.clone(),
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime_ns: self.mtime_ns,
            size: self.size,
            content: self.content.clone(),
            subtree: self.subtree,
            target: self.target.clone(),
        }
    }
    /// What is wrong with the node's fields, if anything (names are checked by the caller).
    fn inconsistency(&self) -> Option<String> {
        let plain = self.content.is_empty() && self.subtree.is_none() && self.target.is_none();
        let ok = match self.kind {
            NodeKind::File => {
                self.subtree.is_none()
                    && self.target.is_none()
                    && self.content.iter().map(|c| c.len as u64).sum::<u64>() == self.size
            }
            NodeKind::Dir => self.subtree.is_some() && self.content.is_empty() && self.target.is_none(),
            NodeKind::Symlink => self.target.is_some() && self.content.is_empty() && self.subtree.is_none(),
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => plain && self.size == 0,
        };
        if !ok {
            return Some("is inconsistent".into());
        }
        if self.rdev != 0 && !matches!(self.kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            return Some("has a device number but is no device".into());
        }
        if self.link.is_some() && self.kind == NodeKind::Dir {
            return Some("is a directory in a hard-link group".into());
        }
        let mut list = 0usize;
        for (i, x) in self.xattrs.iter().enumerate() {
            if x.name.is_empty() || x.name.contains(&0) || x.name.len() > XATTR_NAME_MAX {
                return Some(format!(
                    "has an extended attribute with an invalid name {:?}",
                    String::from_utf8_lossy(&x.name)
                ));
            }
            if x.value.len() > XATTR_VALUE_MAX {
                return Some(format!(
                    "has an extended attribute {:?} of {} bytes (at most {XATTR_VALUE_MAX})",
                    String::from_utf8_lossy(&x.name),
                    x.value.len()
                ));
            }
            if i > 0 && self.xattrs[i - 1].name >= x.name {
                return Some("has extended attributes that are not sorted and unique".into());
            }
            list += x.name.len() + 1;
        }
        if list > XATTR_LIST_MAX {
            return Some(format!("has extended attribute names of {list} bytes (at most {XATTR_LIST_MAX})"));
        }
        None
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the nodes by name, the canonical order every encoder must use.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The blob: version 1 when no node needs version 2 (so such trees keep their ids),
    /// else version 2.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.nodes.windows(2).all(|w| w[0].name < w[1].name), "tree not sorted/unique");
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 96);
        out.extend_from_slice(MAGIC);
        if self.nodes.iter().any(Node::needs_v2) {
            out.extend_from_slice(&2u16.to_le_bytes());
            postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        } else {
            out.extend_from_slice(&1u16.to_le_bytes());
            let v1 = TreeV1 { nodes: self.nodes.iter().map(Node::to_v1).collect() };
            postcard::to_io(&v1, &mut out).expect("writing to a Vec cannot fail");
        }
        out
    }

    /// Decodes a tree blob. `path`/`what` name where it came from for the error.
    pub fn decode(path: &Path, offset: u64, bytes: &[u8]) -> Result<Tree> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(Error::corrupt(path, offset, "blob is not a tree (bad magic)"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        let bad = |e: postcard::Error| Error::corrupt(path, offset, format!("tree blob: {e}"));
        let (tree, rest): (Tree, &[u8]) = match version {
            1 => {
                let (t, rest): (TreeV1, &[u8]) = postcard::take_from_bytes(&bytes[6..]).map_err(bad)?;
                if let Some(n) =
                    t.nodes.iter().find(|n| !matches!(n.kind, NodeKind::File | NodeKind::Dir | NodeKind::Symlink))
                {
                    return Err(Error::corrupt(
                        path,
                        offset,
                        format!("version-1 tree entry {:?} has a version-2 kind", String::from_utf8_lossy(&n.name)),
                    ));
                }
                (Tree { nodes: t.nodes.into_iter().map(Node::from).collect() }, rest)
            }
            VERSION => postcard::take_from_bytes(&bytes[6..]).map_err(bad)?,
            _ => {
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: version as u32,
                    supported: format!("1 or {VERSION}"),
                })
            }
        };
        if !rest.is_empty() {
            return Err(Error::corrupt(path, offset, "tree blob has trailing bytes"));
        }
        if !tree.nodes.windows(2).all(|w| w[0].name < w[1].name) {
            return Err(Error::corrupt(path, offset, "tree entries are not sorted and unique"));
        }
        for n in &tree.nodes {
            let bad_name =
                n.name.is_empty() || n.name == b"." || n.name == b".." || n.name.contains(&b'/') || n.name.contains(&0);
            if bad_name {
                return Err(Error::corrupt(
                    path,
                    offset,
                    format!("tree entry has an unsafe name {:?}", n.name_lossy()),
                ));
            }
            if let Some(what) = n.inconsistency() {
                return Err(Error::corrupt(path, offset, format!("tree entry {:?} {what}", n.name_lossy())));
            }
        }
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn node_strategy() -> impl Strategy<Value = Node> {
        let name = proptest::collection::vec(1u8..=255, 1..24)
            .prop_filter("no slash, dots", |n| !n.contains(&b'/') && n != b"." && n != b"..");
        let xattrs = proptest::collection::btree_map(
            proptest::collection::vec(1u8..=255, 1..16),
            proptest::collection::vec(any::<u8>(), 0..24),
            0..3,
        );
        (
            name,
            0u8..6,
            any::<u32>(),
            any::<i64>(),
            proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..4),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            (any::<u64>(), proptest::option::of(any::<u64>()), xattrs),
        )
            .prop_map(|(name, k, mode, mtime_ns, content, sub, target, (rdev, link, xattrs))| {
                let mut n = Node {
                    name,
                    kind: NodeKind::File,
                    mode: mode & 0o7777,
                    uid: mode,
                    gid: 7,
                    mtime_ns,
                    link,
                    xattrs: xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect(),
                    ..Node::default()
                };
                match k {
                    0 => {
                        n.content = content.into_iter().map(|(id, len)| ChunkRef { id, len: len >> 8 }).collect();
                        n.size = n.content.iter().map(|c| c.len as u64).sum();
                    }
                    1 => {
                        n.kind = NodeKind::Dir;
                        n.subtree = Some(sub);
                        n.link = None;
                    }
                    3 => n.kind = NodeKind::Fifo,
                    4 => {
                        n.kind = NodeKind::CharDevice;
                        n.rdev = rdev;
                    }
                    5 => {
                        n.kind = NodeKind::BlockDevice;
                        n.rdev = rdev;
                    }
                    _ => {
                        n.kind = NodeKind::Symlink;
                        n.size = target.len() as u64;
                        n.target = Some(target);
                    }
                }
                n
            })
    }

    pub fn tree_strategy() -> impl Strategy<Value = Tree> {
        proptest::collection::vec(node_strategy(), 0..12).prop_map(|nodes| {
            let mut t = Tree { nodes };
            t.sort();
            t.nodes.dedup_by(|a, b| a.name == b.name);
            t
        })
    }

    proptest! {
        #[test]
        fn round_trip(t in tree_strategy()) {
            let enc = t.encode();
            prop_assert_eq!(Tree::decode(Path::new("t"), 0, &enc).unwrap(), t.clone());
            // Deterministic: the same tree always encodes to the same bytes.
            prop_assert_eq!(enc, t.encode());
        }

        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(Path::new("t"), 0, &bytes);
            if bytes.len() >= 6 { bytes[..4].copy_from_slice(MAGIC); bytes[4..6].copy_from_slice(&VERSION.to_le_bytes()); }
            let _ = Tree::decode(Path::new("t"), 0, &bytes);
        }
    }

    #[test]
    fn rejects_path_traversal_names() {
        let mut t = Tree::default();
        t.nodes.push(Node { name: b"..".to_vec(), ..Node::default() });
        assert!(Tree::decode(Path::new("t"), 0, &raw(VERSION, &t)).is_err());
    }

    /// A blob of the given version with `t` encoded as version 2 encodes it, unchecked.
    fn raw(version: u16, t: &Tree) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&postcard::to_allocvec(t).unwrap());
        out
    }

    fn plain_file(name: &[u8]) -> Node {
        Node { name: name.to_vec(), mode: 0o644, uid: 1, gid: 2, mtime_ns: 5, ..Node::default() }
    }

    #[test]
    fn version_1_trees_still_read_and_plain_trees_keep_their_bytes() {
        // Bytes as coffer 0.1.0 wrote them: version 1, ten fields per node.
        let mut v1 = MAGIC.to_vec();
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&[1, 1, b'a', 0, 0xa4, 0x03, 1, 2, 10, 0, 0, 0, 0]);
        let t = Tree::decode(Path::new("t"), 0, &v1).expect("a version-1 tree decodes");
        assert_eq!(t.nodes, vec![plain_file(b"a")]);
        assert_eq!(t.encode(), v1, "a tree without version-2 features is written as version 1");
        let mut fifo = t.clone();
        fifo.nodes[0].kind = NodeKind::Fifo;
        let enc = fifo.encode();
        assert_eq!(u16::from_le_bytes([enc[4], enc[5]]), 2);
        assert_eq!(Tree::decode(Path::new("t"), 0, &enc).unwrap(), fifo);
        // A version-1 blob can't smuggle in a version-2 kind.
        let mut bad = v1.clone();
        bad[9] = 3;
        assert!(Tree::decode(Path::new("t"), 0, &bad).is_err());
        let mut newer = v1;
        newer[4] = 3;
        assert!(matches!(Tree::decode(Path::new("t"), 0, &newer), Err(Error::UnsupportedVersion { .. })));
    }

    #[test]
    fn rejects_bad_version_2_fields() {
        let x = |name: &[u8], len: usize| Xattr { name: name.to_vec(), value: vec![1; len] };
        let cases: Vec<(&str, Node)> = vec![
            ("empty xattr name", Node { xattrs: vec![x(b"", 1)], ..plain_file(b"f") }),
            ("NUL in xattr name", Node { xattrs: vec![x(b"user.a\0b", 1)], ..plain_file(b"f") }),
            ("long xattr name", Node { xattrs: vec![x(&[b'u'; 256], 1)], ..plain_file(b"f") }),
            ("huge xattr value", Node { xattrs: vec![x(b"user.a", XATTR_VALUE_MAX + 1)], ..plain_file(b"f") }),
            ("unsorted xattrs", Node { xattrs: vec![x(b"user.b", 1), x(b"user.a", 1)], ..plain_file(b"f") }),
            ("duplicate xattrs", Node { xattrs: vec![x(b"user.a", 1), x(b"user.a", 2)], ..plain_file(b"f") }),
            ("rdev on a file", Node { rdev: 259, ..plain_file(b"f") }),
            (
                "linked directory",
                Node { kind: NodeKind::Dir, subtree: Some([0; 32]), link: Some(1), ..plain_file(b"d") },
            ),
            ("fifo with a size", Node { kind: NodeKind::Fifo, size: 3, ..plain_file(b"p") }),
            ("device with a target", Node { kind: NodeKind::CharDevice, target: Some(vec![1]), ..plain_file(b"c") }),
        ];
        for (what, n) in cases {
            let t = Tree { nodes: vec![n] };
            assert!(Tree::decode(Path::new("t"), 0, &raw(2, &t)).is_err(), "{what} was accepted");
        }
        let many: Vec<Xattr> = (0..300).map(|i| x(format!("user.{i:0>250}").as_bytes(), 0)).collect();
        let t = Tree { nodes: vec![Node { xattrs: many, ..plain_file(b"f") }] };
        assert!(Tree::decode(Path::new("t"), 0, &raw(2, &t)).is_err(), "64 KiB of names was accepted");
    }
}
