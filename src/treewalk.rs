//! Walking a set's trees without recursion: an explicit stack, a depth limit, and optional
//! bounds on what the walk may expand to.
//!
//! Trees come from the repository, so their depth and fan-out are untrusted input: a recursive
//! walk over a chain of directories 200,000 levels deep overflows the call stack, and a tree
//! naming one subtree twice, thirty levels over, expands to 2^30 entries from 31 blobs. Every
//! walk over a set's trees goes through [`walk`] (or [`walk_from`], which takes the root tree
//! and a tree loader, for callers that already hold the root or load trees their own way).
//!
//! Invariants:
//! - Memory is one frame per level of the current path (that level's tree and a cursor) plus
//!   the current path in one buffer; never the call stack, never the whole set.
//! - Order is depth-first pre-order, siblings in tree order (name bytes): a directory is
//!   visited before everything under it, as tar and restore need.
//! - No node deeper than [`Limits::max_depth`] is visited: the walk stops with an
//!   [`Error::BadTree`] (kind `Corrupt`) naming the set, component and path. Depth 1 is an
//!   entry of the component's root tree.
//! - With bounds ([`Limits::declared`] takes them from the manifest's component), the walk
//!   stops, with the same error, before visiting a file, a directory or file bytes beyond the
//!   bound. A visitor therefore never sees more than the manifest declares. Bounds count every
//!   visit, as a backup counts every path: a subtree shared by two directories counts twice.
//! - The visitor decides per directory whether to descend ([`Step::Skip`] for a subtree it
//!   has handled before, as prune's marking does); skipped subtrees are not counted.

use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::repo::Repo;
use crate::set::{Component, Manifest};
use crate::tree::{Node, NodeKind, Tree};

/// Deepest node a walk visits by default. A backup opens every path from its source root and
/// Linux refuses paths over 4096 bytes (`PATH_MAX`), so no backup makes trees deeper than
/// about 2048 levels; twice that is generous, and keeps paths (which grow with depth) small.
pub const MAX_DEPTH: usize = 4096;

/// File bytes a walk tolerates beyond the component's declared `bytes`: the backup counts a
/// file's size when it stats it and stores what it then reads, so a file that grew while it
/// was read (a log) is stored larger than declared.
pub fn bytes_slack(declared: u64) -> u64 {
    (declared / 4).saturating_add(1 << 30)
}

/// What a walk may visit. `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: usize,
    /// Regular-file nodes.
    pub max_files: Option<u64>,
    /// Directory nodes (the component's root tree is not one of them).
    pub max_dirs: Option<u64>,
    /// Sum of the sizes of regular-file nodes.
    pub max_bytes: Option<u64>,
}

impl Default for Limits {
    /// The depth limit only.
    fn default() -> Limits {
        Limits { max_depth: MAX_DEPTH, max_files: None, max_dirs: None, max_bytes: None }
    }
}

impl Limits {
    /// The depth limit and what the component declares: its `files`, its `dirs` (a backup
    /// counts the source root among them, so the bound is one loose for directory
    /// components), and its `bytes` plus [`bytes_slack`].
    pub fn declared(c: &Component) -> Limits {
        Limits {
            max_depth: MAX_DEPTH,
            max_files: Some(c.files),
            max_dirs: Some(c.dirs),
            max_bytes: Some(c.bytes.saturating_add(bytes_slack(c.bytes))),
        }
    }
}

/// What a walk visited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Nodes of every other kind (symlinks, …).
    pub others: u64,
}

/// Which set and component a walk is in, for its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// How the set is named in messages, e.g. `set alfresco of 2026-11-22T01:00:00Z`.
    pub set: String,
    pub component: String,
}

impl Origin {
    pub fn new(m: &Manifest, component: &str) -> Origin {
        Origin { set: format!("set {} of {}", m.name, m.started), component: component.to_string() }
    }

    fn error(&self, path: &[u8], depth: usize, what: String) -> Error {
        Error::BadTree {
            at: format!("{}, component {:?}, at {} (depth {depth})", self.set, self.component, show_path(path)),
            what,
        }
    }
}

/// A path for a message: whole when short, else its start and end (paths grow with depth).
pub fn show_path(path: &[u8]) -> String {
    const KEEP: usize = 60;
    if path.len() <= 2 * KEEP + 20 {
        return String::from_utf8_lossy(path).into_owned();
    }
    format!(
        "{}…[{} bytes]…{}",
        String::from_utf8_lossy(&path[..KEEP]),
        path.len() - 2 * KEEP,
        String::from_utf8_lossy(&path[path.len() - KEEP..])
    )
}

/// The visitor's answer for a directory (ignored for other nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Descend,
    Skip,
}

/// One visited node.
#[derive(Debug)]
pub struct Entry<'a> {
    /// `root_path/name/…/name`, raw bytes (names need not be UTF-8); no leading `/` when the
    /// root path is empty.
    pub path: &'a [u8],
    pub node: &'a Node,
    /// 1 for an entry of the walk's root tree when it starts at the component's root.
    pub depth: usize,
}

impl Entry<'_> {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(self.path).into_owned()
    }
}

/// Walks the tree `root` of a component, reading subtrees from the repository.
pub fn walk(
    repo: &Repo,
    origin: &Origin,
    root: &TreeId,
    root_path: &[u8],
    limits: &Limits,
    visit: impl FnMut(&Entry) -> Result<Step>,
) -> Result<Counts> {
    let tree = repo.read_tree(root)?;
    walk_from(tree, root_path, 0, origin, limits, |id| repo.read_tree(id), visit)
}

struct Frame {
    tree: Tree,
    next: usize,
    /// Length of the path buffer at this tree (its directory's path).
    path_len: usize,
    /// Depth of this tree's entries.
    depth: usize,
}

/// Walks from an already-read tree at `root_path`, whose entries are at `root_depth + 1`
/// (0 for a component's root tree; a subtree `c/x/y` is at depth 2). `load` reads subtrees;
/// its errors end the walk (a loader may instead record a problem and return an empty tree).
pub fn walk_from(
    root: Tree,
    root_path: &[u8],
    root_depth: usize,
    origin: &Origin,
    limits: &Limits,
    mut load: impl FnMut(&TreeId) -> Result<Tree>,
    mut visit: impl FnMut(&Entry) -> Result<Step>,
) -> Result<Counts> {
    let mut counts = Counts::default();
    let mut path = root_path.to_vec();
    let mut stack = vec![Frame { tree: root, next: 0, path_len: path.len(), depth: root_depth + 1 }];
    while let Some(top) = stack.last_mut() {
        let i = top.next;
        if i >= top.tree.nodes.len() {
            stack.pop();
            continue;
        }
        top.next += 1;
        let (depth, path_len) = (top.depth, top.path_len);
        let node = &top.tree.nodes[i];
        path.truncate(path_len);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&node.name);
        if depth > limits.max_depth {
            return Err(origin.error(
                &path,
                depth,
                format!(
                    "the tree is deeper than {} levels, deeper than any backup makes (damaged or hostile repository)",
                    limits.max_depth
                ),
            ));
        }
        count(&mut counts, node, limits).map_err(|what| origin.error(&path, depth, what))?;
        let step = visit(&Entry { path: &path, node, depth })?;
        let sub = if node.kind == NodeKind::Dir && step == Step::Descend { node.subtree_id() } else { None };
        if let Some(sub) = sub {
            let tree = load(&sub)?;
            stack.push(Frame { tree, next: 0, path_len: path.len(), depth: depth + 1 });
        }
    }
    Ok(counts)
}

/// Counts `n`, failing (with the reason) when that passes a bound.
fn count(c: &mut Counts, n: &Node, l: &Limits) -> std::result::Result<(), String> {
    let over = |what: &str, bound: u64| {
        format!(
            "the trees expand to more than the {bound} {what} the manifest declares for the component \
             (a subtree named more often than the backup saw it: damaged or hostile repository)"
        )
    };
    match n.kind {
        NodeKind::File => {
            c.files += 1;
            c.bytes = c.bytes.saturating_add(n.size);
            if let Some(max) = l.max_files.filter(|&m| c.files > m) {
                return Err(over("files", max));
            }
            if let Some(max) = l.max_bytes.filter(|&m| c.bytes > m) {
                return Err(over("bytes (with slack for files that grew while read)", max));
            }
        }
        NodeKind::Dir => {
            c.dirs += 1;
            if let Some(max) = l.max_dirs.filter(|&m| c.dirs > m) {
                return Err(over("directories", max));
            }
        }
        _ => c.others += 1,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::id::Id;
    use std::collections::HashMap;

    /// Trees in memory, named by a counter (ids need not be hashes here).
    #[derive(Default)]
    struct Trees(HashMap<TreeId, Tree>);

    impl Trees {
        fn add(&mut self, nodes: Vec<Node>) -> TreeId {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(self.0.len() as u64 + 1).to_le_bytes());
            let id = TreeId(Id(b));
            let mut t = Tree { nodes };
            t.sort();
            self.0.insert(id, t);
            id
        }
        fn walk(&self, root: TreeId, limits: &Limits, mut visit: impl FnMut(&Entry) -> Step) -> Result<Counts> {
            let origin = Origin { set: "set s of t".into(), component: "c".into() };
            walk_from(self.0[&root].clone(), b"c", 0, &origin, limits, |id| Ok(self.0[id].clone()), |e| Ok(visit(e)))
        }
    }

    fn node(name: &str, kind: NodeKind) -> Node {
        Node { name: name.as_bytes().to_vec(), kind, ..Node::default() }
    }
    fn dir(name: &str, sub: TreeId) -> Node {
        Node { subtree: Some(*sub.as_bytes()), ..node(name, NodeKind::Dir) }
    }
    fn file(name: &str, size: u64) -> Node {
        Node { size, ..node(name, NodeKind::File) }
    }

    fn paths(t: &Trees, root: TreeId) -> Vec<String> {
        let mut out = Vec::new();
        t.walk(root, &Limits::default(), |e| {
            out.push(e.path_lossy());
            Step::Descend
        })
        .unwrap();
        out
    }

    #[test]
    fn visits_parents_first_and_siblings_in_name_order() {
        let mut t = Trees::default();
        let inner = t.add(vec![file("z", 1), file("y", 1)]);
        let root = t.add(vec![file("b", 1), dir("a", inner), node("c", NodeKind::Symlink)]);
        assert_eq!(paths(&t, root), ["c/a", "c/a/y", "c/a/z", "c/b", "c/c"]);
    }

    #[test]
    fn skip_leaves_a_subtree_out_and_uncounted() {
        let mut t = Trees::default();
        let inner = t.add(vec![file("x", 7)]);
        let root = t.add(vec![dir("a", inner), dir("b", inner)]);
        let mut seen = Vec::new();
        let counts = t
            .walk(root, &Limits::default(), |e| {
                seen.push(e.path_lossy());
                if e.path == b"c/b" {
                    Step::Skip
                } else {
                    Step::Descend
                }
            })
            .unwrap();
        assert_eq!(seen, ["c/a", "c/a/x", "c/b"]);
        assert_eq!(counts, Counts { files: 1, dirs: 2, bytes: 7, others: 0 });
    }

    #[test]
    fn depth_limit_stops_a_deep_chain_naming_where() {
        let mut t = Trees::default();
        let mut id = t.add(vec![file("leaf", 0)]);
        for _ in 0..100_000 {
            id = t.add(vec![dir("d", id)]);
        }
        let mut deepest = 0;
        let err = t
            .walk(id, &Limits { max_depth: 50, ..Limits::default() }, |e| {
                deepest = deepest.max(e.depth);
                Step::Descend
            })
            .unwrap_err();
        assert_eq!(deepest, 50, "nodes up to the limit are visited, none beyond");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        let msg = err.to_string();
        assert!(
            msg.contains("set s of t, component \"c\"") && msg.contains("c/d/d/d") && msg.contains("depth 51"),
            "{msg}"
        );
        assert!(msg.contains("deeper than 50 levels"), "{msg}");
        // The default limit holds too, and 100,000 levels need no deep call stack.
        let err = t.walk(id, &Limits::default(), |_| Step::Descend).unwrap_err();
        assert!(err.to_string().contains(&format!("deeper than {MAX_DEPTH} levels")), "{err}");
        assert!(err.to_string().len() < 400, "long paths are shortened: {err}");
    }

    #[test]
    fn a_chain_at_the_limit_is_walked_whole() {
        let mut t = Trees::default();
        let mut id = t.add(vec![file("leaf", 0)]);
        for _ in 0..MAX_DEPTH - 1 {
            id = t.add(vec![dir("d", id)]);
        }
        let counts = t.walk(id, &Limits::default(), |_| Step::Descend).unwrap();
        assert_eq!(counts.dirs as usize, MAX_DEPTH - 1);
        assert_eq!(counts.files, 1);
    }

    /// Level 0 holds one file of 5 bytes; level i names level i-1 twice.
    fn dag(t: &mut Trees, levels: usize) -> TreeId {
        let mut id = t.add(vec![file("f", 5)]);
        for _ in 0..levels {
            id = t.add(vec![dir("a", id), dir("b", id)]);
        }
        id
    }

    #[test]
    fn bounds_refuse_a_dag_that_expands_beyond_the_declaration() {
        let mut t = Trees::default();
        let root = dag(&mut t, 30);
        let declared = |files, dirs, bytes| Limits {
            max_files: Some(files),
            max_dirs: Some(dirs),
            max_bytes: Some(bytes),
            ..Limits::default()
        };
        let mut visited = 0u64;
        let err = t
            .walk(root, &declared(1, 31, 5), |_| {
                visited += 1;
                Step::Descend
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("more than the 1 files the manifest declares"), "{err}");
        assert!(visited <= 32, "stopped at once, after {visited} nodes");
        // Each bound on its own.
        let err = t.walk(root, &declared(u64::MAX, 40, u64::MAX), |_| Step::Descend).unwrap_err();
        assert!(err.to_string().contains("more than the 40 directories"), "{err}");
        let err = t.walk(root, &declared(u64::MAX, u64::MAX, 12), |_| Step::Descend).unwrap_err();
        assert!(err.to_string().contains("more than the 12 bytes"), "{err}");
        // Exactly what a backup of the expanded tree would declare passes.
        let small = dag(&mut t, 4);
        let c = t.walk(small, &declared(16, 30, 80), |_| Step::Descend).unwrap();
        assert_eq!(c, Counts { files: 16, dirs: 30, bytes: 80, others: 0 });
    }

    #[test]
    fn declared_limits_come_from_the_component() {
        let mut c = crate::set::tests::sample().components.remove(0);
        c.files = 3;
        c.dirs = 2;
        c.bytes = 1000;
        let l = Limits::declared(&c);
        assert_eq!((l.max_files, l.max_dirs, l.max_depth), (Some(3), Some(2), MAX_DEPTH));
        assert_eq!(l.max_bytes, Some(1000 + 250 + (1 << 30)));
        c.bytes = u64::MAX;
        assert_eq!(Limits::declared(&c).max_bytes, Some(u64::MAX));
    }

    #[test]
    fn root_path_may_be_empty() {
        let mut t = Trees::default();
        let inner = t.add(vec![file("x", 0)]);
        let root = t.add(vec![dir("a", inner)]);
        let origin = Origin { set: "s".into(), component: "c".into() };
        let mut out = Vec::new();
        walk_from(
            t.0[&root].clone(),
            b"",
            0,
            &origin,
            &Limits::default(),
            |id| Ok(t.0[id].clone()),
            |e| {
                out.push(e.path_lossy());
                Ok(Step::Descend)
            },
        )
        .unwrap();
        assert_eq!(out, ["a", "a/x"]);
    }
}
