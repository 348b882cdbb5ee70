//! Tree blobs: the sorted listing of one directory.
//!
//! A tree is encoded deterministically (entries sorted by name bytes, fixed field order,
//! postcard varints), so an unchanged directory encodes to the same bytes, gets the same id,
//! and is stored once however many sets name it. Trees are stored in packs as blobs of kind
//! `Tree`. Blob layout: `"CTRE" | version u16 | postcard(Tree)`; the blob's id (keyed BLAKE3)
//! is its checksum.

use crate::error::{Error, Result};
use crate::id::{ChunkId, Id, TreeId};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MAGIC: &[u8; 4] = b"CTRE";
pub const VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Node {
    pub fn subtree_id(&self) -> Option<TreeId> {
        self.subtree.map(|b| TreeId(Id(b)))
    }
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
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

    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.nodes.windows(2).all(|w| w[0].name < w[1].name), "tree not sorted/unique");
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a tree blob. `path`/`what` name where it came from for the error.
    pub fn decode(path: &Path, offset: u64, bytes: &[u8]) -> Result<Tree> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(Error::corrupt(path, offset, "blob is not a tree (bad magic)"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version as u32,
                supported: VERSION.to_string(),
            });
        }
        let (tree, rest): (Tree, &[u8]) = postcard::take_from_bytes(&bytes[6..])
            .map_err(|e| Error::corrupt(path, offset, format!("tree blob: {e}")))?;
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
            let consistent = match n.kind {
                NodeKind::File => {
                    n.subtree.is_none()
                        && n.target.is_none()
                        && n.content.iter().map(|c| c.len as u64).sum::<u64>() == n.size
                }
                NodeKind::Dir => n.subtree.is_some() && n.content.is_empty() && n.target.is_none(),
                NodeKind::Symlink => n.target.is_some() && n.content.is_empty() && n.subtree.is_none(),
            };
            if !consistent {
                return Err(Error::corrupt(path, offset, format!("tree entry {:?} is inconsistent", n.name_lossy())));
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
        (
            name,
            0u8..3,
            any::<u32>(),
            any::<i64>(),
            proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..4),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(name, k, mode, mtime_ns, content, sub, target)| {
                let mut n = Node {
                    name,
                    kind: NodeKind::File,
                    mode: mode & 0o7777,
                    uid: mode,
                    gid: 7,
                    mtime_ns,
                    size: 0,
                    content: vec![],
                    subtree: None,
                    target: None,
                };
                match k {
                    0 => {
                        n.content = content.into_iter().map(|(id, len)| ChunkRef { id, len: len >> 8 }).collect();
                        n.size = n.content.iter().map(|c| c.len as u64).sum();
                    }
                    1 => {
                        n.kind = NodeKind::Dir;
                        n.subtree = Some(sub);
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
        t.nodes.push(Node {
            name: b"..".to_vec(),
            kind: NodeKind::File,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            content: vec![],
            subtree: None,
            target: None,
        });
        let enc = {
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&postcard::to_allocvec(&t).unwrap());
            out
        };
        assert!(Tree::decode(Path::new("t"), 0, &enc).is_err());
    }
}
