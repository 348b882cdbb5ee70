//! Looking inside a set without restoring it: path lookup, recursive listings (walked by
//! [`crate::treewalk`], bounded by the manifest), and repository-wide statistics.

use crate::error::{Error, Result};
use crate::index::Totals;
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use crate::treewalk::{self, Limits, Origin, Step};

/// One line of a listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub path: String,
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn kind_str(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice => "chardev",
        NodeKind::BlockDevice => "blockdev",
    }
}

fn listed(path: String, n: &Node) -> Listed {
    Listed {
        path,
        kind: kind_str(n.kind),
        mode: n.mode,
        size: n.size,
        mtime_ns: n.mtime_ns,
        target: n.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
    }
}

/// Finds the node at `component[/sub/path]`. For a bare component name, returns its root
/// tree and no node.
pub fn lookup(repo: &Repo, m: &Manifest, path: &str) -> Result<(Option<Node>, Option<Tree>)> {
    let parts = crate::restore::split_path(path)?;
    let Some(first) = parts.first() else { return Err(Error::InvalidInput("empty path".into())) };
    let comp =
        m.component(first).ok_or_else(|| Error::NotFound(format!("{path}: the set has no component {first:?}")))?;
    let mut tree = repo.read_tree(&comp.root)?;
    let mut node: Option<Node> = None;
    for (i, p) in parts[1..].iter().enumerate() {
        let n = tree.find(p.as_bytes()).cloned().ok_or_else(|| Error::NotFound(format!("{path}: not in the set")))?;
        if n.kind == NodeKind::Dir {
            tree = repo.read_tree(&n.subtree_id().ok_or_else(|| Error::NotFound(path.into()))?)?;
        } else if i + 2 < parts.len() {
            return Err(Error::NotFound(format!("{path}: {} is not a directory", parts[..i + 2].join("/"))));
        }
        node = Some(n);
    }
    let is_dir = node.as_ref().map(|n| n.kind == NodeKind::Dir).unwrap_or(true);
    Ok((node, if is_dir { Some(tree) } else { None }))
}

/// Lists `path` (or every component when `None`) recursively, calling `f` per entry. The walk
/// is bounded by what the manifest declares for the component ([`Limits::declared`]).
pub fn list(repo: &Repo, m: &Manifest, path: Option<&str>, f: &mut dyn FnMut(Listed) -> Result<()>) -> Result<()> {
    let _lease = crate::lock::Lease::acquire_reader(repo, "ls", &mut |m| eprintln!("coffer: {m}"))?;
    let roots: Vec<Vec<String>> = match path {
        Some(p) => vec![crate::restore::split_path(p)?.into_iter().map(String::from).collect()],
        None => m.components.iter().map(|c| vec![c.name.clone()]).collect(),
    };
    for parts in roots {
        let root = parts.join("/");
        let (node, tree) = lookup(repo, m, &root)?;
        match (&node, tree) {
            (Some(n), None) => f(listed(root.clone(), n))?,
            (n, Some(t)) => {
                if let Some(n) = n {
                    f(listed(root.clone(), n))?;
                } else {
                    f(Listed {
                        path: root.clone(),
                        kind: "component",
                        mode: 0o755,
                        size: 0,
                        mtime_ns: 0,
                        target: None,
                    })?;
                }
                let comp =
                    m.component(&parts[0]).ok_or_else(|| Error::NotFound(format!("no component {:?}", parts[0])))?;
                let origin = Origin::new(m, &comp.name);
                treewalk::walk_from(
                    t,
                    root.as_bytes(),
                    parts.len() - 1,
                    &origin,
                    &Limits::declared(comp),
                    |id| repo.read_tree(id),
                    |e| {
                        f(listed(e.path_lossy(), e.node))?;
                        Ok(Step::Descend)
                    },
                )?;
            }
            (None, None) => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// `xchacha20poly1305` (every object sealed) or `none`.
    pub encryption: String,
    pub sets: u64,
    /// Sum of every set's file bytes: what restoring every set would write.
    pub logical_bytes: u64,
    /// Distinct chunk bytes before compression.
    pub unique_bytes: u64,
    /// Bytes of pack files on disk (as indexed).
    pub stored_bytes: u64,
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    pub chunks: u64,
    pub packs: u64,
}

pub fn stats(repo: &Repo) -> Result<Stats> {
    let sets = repo.list_sets()?;
    let logical: u64 = sets.iter().map(|(_, m)| m.total_bytes()).sum();
    let t: Totals = repo.index()?.totals()?;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(Stats {
        encryption: repo.config.encryption.clone(),
        sets: sets.len() as u64,
        logical_bytes: logical,
        unique_bytes: t.raw_bytes,
        stored_bytes: t.pack_bytes,
        dedup_ratio: ratio(logical, t.raw_bytes),
        compression_ratio: ratio(t.raw_bytes, t.stored_bytes),
        chunks: t.chunks,
        packs: t.packs,
    })
}
