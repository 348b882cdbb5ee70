//! Set manifests: one restore point made of named components.
//!
//! A manifest is JSON inside the common envelope (`COFFRSET`, version 1), stored at
//! `sets/<id>` where the id is the BLAKE3 of the file. Writing it (temp file, fsync, rename)
//! is the commit point of a backup: a manifest is only written once every pack it needs is
//! durable and indexed, so a set either exists completely or not at all.

use crate::envelope;
use crate::error::{Error, IoContext, Result};
use crate::id::{Id, SetId, TreeId};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"COFFRSET";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A directory tree (a contentstore).
    Directory,
    /// The standard output of a command (a database dump), stored as one file.
    Command,
    /// A Solr index snapshot directory.
    Solr,
}

/// What a `command` component ran and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub argv: Vec<String>,
    /// The name of the single file the output is stored as.
    pub file: String,
    pub exit_code: Option<i32>,
    pub stderr_tail: String,
    /// Set when the stream looked already compressed (dedup between nights suffers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_warning: Option<String>,
}

/// Which Solr snapshot a `solr` component archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolrRecord {
    pub snapshot: String,
    pub snapshot_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    /// Where it came from: a path, a command line, a URL.
    pub source: String,
    /// Capture start and end, RFC 3339 UTC with nanoseconds.
    pub started: String,
    pub finished: String,
    pub root: TreeId,
    pub files: u64,
    pub dirs: u64,
    /// Logical bytes of file content in the component.
    pub bytes: u64,
    /// Bytes this component added to the repository (after dedup and compression).
    pub stored_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solr: Option<SolrRecord>,
    /// Paths that could not be read and are missing from this component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Entries deliberately not archived (sockets), each with why. Not a failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub host: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub tool_version: String,
    pub started: String,
    pub finished: String,
    /// The set whose files cache entries and trees this run reused, if any.
    pub parent: Option<SetId>,
    pub components: Vec<Component>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        envelope::encode(MAGIC, VERSION, &json)
    }

    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let (_, payload) = envelope::decode(path, "set manifest", MAGIC, 1, VERSION, bytes)?;
        let m: Manifest = serde_json::from_slice(payload)
            .map_err(|e| Error::corrupt(path, envelope::HEADER_LEN as u64, format!("set manifest payload: {e}")))?;
        crate::clock::parse(&m.started).map_err(|e| Error::corrupt(path, 0, format!("set time: {e}")))?;
        // Component names become directory names under a restore target, tar member prefixes
        // and mount entries: a hostile manifest must not name `../x`, `/abs` or `c/d`, and two
        // components of one name would let the second be written through the first's symlinks.
        let mut seen = std::collections::HashSet::new();
        for c in &m.components {
            if !safe_name(c.name.as_bytes()) {
                return Err(Error::corrupt(
                    path,
                    0,
                    format!("set manifest names a component {:?}: not a plain directory name", c.name),
                ));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(Error::corrupt(path, 0, format!("set manifest names two components {:?}", c.name)));
            }
        }
        for c in &m.components {
            crate::clock::parse(&c.started)
                .and_then(|_| crate::clock::parse(&c.finished))
                .map_err(|e| Error::corrupt(path, 0, format!("component {:?} time: {e}", c.name)))?;
        }
        Ok(m)
    }

    pub fn id_of(bytes: &[u8]) -> SetId {
        SetId(Id(*blake3::hash(bytes).as_bytes()))
    }

    pub fn total_bytes(&self) -> u64 {
        self.components.iter().map(|c| c.bytes).sum()
    }
    pub fn total_files(&self) -> u64 {
        self.components.iter().map(|c| c.files).sum()
    }
    pub fn stored_bytes(&self) -> u64 {
        self.components.iter().map(|c| c.stored_bytes).sum()
    }
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// Whether a name from a repository is one plain path component: non-empty, not `.` or `..`,
/// without `/` or NUL. The same rule as tree entry names (`Tree::decode`).
pub fn safe_name(name: &[u8]) -> bool {
    !(name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0))
}

/// Loads and checks `sets/<id>`: the file must hash to its name.
pub fn load(path: &Path) -> Result<(SetId, Manifest)> {
    let bytes = std::fs::read(path).ctx(path)?;
    from_object(path, &bytes)
}

/// A manifest from the bytes of the object at `path` (whose last component is its name).
pub fn from_object(path: &Path, bytes: &[u8]) -> Result<(SetId, Manifest)> {
    let m = Manifest::decode(path, bytes)?;
    let id = Manifest::id_of(bytes);
    let named = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if named != id.to_hex() {
        return Err(Error::corrupt(path, 0, "set manifest does not match its name (damaged or renamed)"));
    }
    Ok((id, m))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn sample() -> Manifest {
        Manifest {
            name: "alfresco".into(),
            host: "h".into(),
            tags: vec!["nightly".into()],
            tool_version: "0.1.0".into(),
            started: "2026-11-22T01:00:00.000000001Z".into(),
            finished: "2026-11-22T01:10:00Z".into(),
            parent: None,
            components: vec![Component {
                name: "db".into(),
                kind: ComponentKind::Command,
                source: "pg_dump".into(),
                started: "2026-11-22T01:00:00Z".into(),
                finished: "2026-11-22T01:01:00Z".into(),
                root: TreeId(Id([3; 32])),
                files: 1,
                dirs: 0,
                bytes: 10,
                stored_bytes: 5,
                command: Some(CommandRecord {
                    argv: vec!["pg_dump".into()],
                    file: "alfresco.dump".into(),
                    exit_code: Some(0),
                    stderr_tail: String::new(),
                    compressed_warning: None,
                }),
                solr: None,
                unreadable: vec![],
                skipped: vec![],
            }],
        }
    }

    proptest! {
        #[test]
        fn round_trip(name in "[a-z]{1,12}", tags in proptest::collection::vec("[a-z0-9]{1,8}", 0..3), bytes in any::<u64>()) {
            let mut m = sample();
            m.name = name;
            m.tags = tags;
            m.components[0].bytes = bytes;
            let enc = m.encode();
            prop_assert_eq!(Manifest::decode(Path::new("s"), &enc).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Manifest::decode(Path::new("s"), &bytes);
        }
    }

    #[test]
    fn unsafe_or_duplicate_component_names_are_corrupt() {
        for bad in ["../../x", "/abs/path", "c/d", "..", ".", "", "a\0b"] {
            let mut m = sample();
            m.components[0].name = bad.into();
            let err = Manifest::decode(Path::new("/r/sets/abc"), &m.encode()).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt, "{bad:?}: {err}");
            assert!(err.to_string().contains("/r/sets/abc") && err.to_string().contains("component"), "{err}");
        }
        let mut m = sample();
        m.components.push(m.components[0].clone());
        let err = Manifest::decode(Path::new("/r/sets/abc"), &m.encode()).unwrap_err();
        assert!(err.to_string().contains("two components \"db\""), "{err}");
    }

    #[test]
    fn truncated_manifest_names_file() {
        let enc = sample().encode();
        let err = Manifest::decode(Path::new("/r/sets/abc"), &enc[..enc.len() / 2]).unwrap_err();
        assert!(err.to_string().contains("/r/sets/abc"), "{err}");
    }
}
