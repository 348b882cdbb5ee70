//! The one door to repository bytes (format v2, issue 11): a repository is a set of objects,
//! each named by its [`Kind`] and a name, behind the small [`Storage`] trait. `LocalStorage` is
//! a directory, `S3Storage` a bucket (and prefix) on an S3-compatible server, `MemStorage`
//! lives in memory for tests, `FaultyStorage` wraps either to make calls fail, short or wrong
//! in the ways real disks and object stores do.
//!
//! Wired so far: the config, set manifests (`Repo::commit_manifest`, `list_sets`,
//! `remove_manifest`), leases (`lock`), pack writes (`pack::Closed::persist`, used by backup,
//! prune's repack and repair's salvage), chunk reads (`Repo::read_pack_range`), and every pack
//! listing, trailer read and removal (verify, prune, `repair index`, adoption). The catalog's
//! move into index objects and the local cache is the next step of issue 11.
//!
//! # Guarantees every implementation gives (and everything above may rely on)
//! - **Atomic put.** After [`Storage::put`] returns `Ok`, the object exists whole under its
//!   name, durably (it survives a crash or power loss of the machine that wrote it). If `put`
//!   fails or the process dies during it, the object is either absent or whole: never partial.
//!   A put that returned an error may still have landed (the reply was lost), so callers
//!   treat an error as "unknown" and only write objects whose name is their content's id, or
//!   that are safe to write twice.
//! - **Read after write.** A [`Storage::read`] that starts after a `put` of the same name
//!   returned sees the new bytes; after a [`Storage::remove`] returned, it sees no object.
//! - **List may lag.** [`Storage::list`] may miss objects put (or still show objects removed)
//!   shortly before: on object stores listing is eventually consistent. Nothing that decides
//!   what to *delete* may rely on a list alone without a margin of age (prune's rule), and
//!   nothing that decides a set *exists* relies on it beyond "not yet visible".
//! - **Names.** Object names are 1 to 128 characters of `[0-9A-Za-z._@-]`, not starting with
//!   `.`; anything else is refused (a name never becomes a path outside the kind's place).
//! - No rename, append, directory or fsync in the trait: those are `LocalStorage`'s own
//!   business, so the same code runs on an object store.

mod faulty;
mod local;
mod mem;
pub mod s3;
mod sealed;

pub use faulty::{Effect, Fault, FaultyStorage, Op};
pub use local::LocalStorage;
pub use mem::MemStorage;
pub use s3::{S3Credentials, S3Location, S3Storage};
pub use sealed::SealedStorage;

use crate::error::{Error, Result};
use std::ops::Range;

/// What an object is; each kind has its own namespace (a directory, a key prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Config,
    Keys,
    Packs,
    Index,
    Sets,
    Locks,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Config, Kind::Keys, Kind::Packs, Kind::Index, Kind::Sets, Kind::Locks];

    /// The kind's place in a repository: a directory name, a key prefix.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Keys => "keys",
            Kind::Packs => "packs",
            Kind::Index => "index",
            Kind::Sets => "sets",
            Kind::Locks => "locks",
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// When the object was last put, in seconds since the epoch (an object store's
    /// `LastModified`, a file's mtime). Only ages are computed from it, with a margin
    /// (prune's grace for packs no index names), so clocks need not agree to the second.
    pub modified: i64,
}

/// A repository's objects. See the module documentation for the guarantees.
pub trait Storage: Send + Sync {
    /// Where this storage is, for messages: a directory, `s3://bucket/prefix`, `mem:`.
    fn location(&self) -> String;

    /// The object's bytes, or those in `range` (which must lie inside the object: a range
    /// past its end is an error naming the object and its size, never a short read).
    /// A missing object is [`Error::ObjectMissing`].
    fn read(&self, kind: Kind, name: &str, range: Option<Range<u64>>) -> Result<Vec<u8>>;

    /// Stores `bytes` under the name, replacing an object of that name (atomic, durable).
    fn put(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<()>;

    /// Every object of the kind with its size, in no particular order (may lag behind puts
    /// and removes).
    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>>;

    /// The object's size, or `None` when there is none (a cheap HEAD, read-after-write
    /// consistent like `read`).
    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>>;

    /// Removes the object; removing a missing object is not an error (it may have been removed
    /// by a run whose reply was lost).
    fn remove(&self, kind: Kind, name: &str) -> Result<()>;

    /// A place to build an object whose name is known only once it is complete (a pack is
    /// named by its trailer). The default keeps the bytes in memory and puts them at the end;
    /// `LocalStorage` writes a temporary file and renames it, so a pack never sits in memory.
    fn spool(&self, kind: Kind) -> Result<Box<dyn Spool>> {
        Ok(Box::new(MemSpool { kind, bytes: Vec::new() }))
    }

    /// How many requests for whole packs are worth having in flight at once: one on a disk
    /// (they share its bandwidth), more on an object store, where each waits on the network
    /// and the server. Backups run this many pack uploads at once.
    fn parallel_requests(&self) -> usize {
        1
    }

    /// How many threads should read from this storage at once on a machine with `cores`:
    /// one per core, or more when each read mostly waits (restore's range readers, verify's
    /// whole-pack reads).
    fn readers(&self, cores: usize) -> usize {
        cores.max(self.parallel_requests() * 2).max(1)
    }

    /// Bytes not needed that are still worth reading to join two ranges of one object into one
    /// read: none on a disk (a read is cheap), more on an object store, where each request
    /// costs a round trip.
    fn read_gap(&self) -> u64 {
        0
    }
}

/// Where a repository is, as given in `--repo` or `COFFER_REPO`: a directory, or
/// `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(std::path::PathBuf),
    S3(S3Location),
}

impl Location {
    pub fn parse(s: &str) -> Result<Location> {
        if s.is_empty() {
            return Err(Error::InvalidInput("the repository location is empty".into()));
        }
        match s.strip_prefix("s3:") {
            Some(url) => Ok(Location::S3(S3Location::parse(url)?)),
            None => Ok(Location::Local(s.into())),
        }
    }

    /// The local directory, if the repository is one.
    pub fn local(&self) -> Option<&std::path::Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::S3(_) => None,
        }
    }

    /// Opens the storage (a local one must already exist; see `Repo::init`).
    pub fn open(&self, creds: &S3Credentials) -> Result<std::sync::Arc<dyn Storage>> {
        Ok(match self {
            Location::Local(p) => std::sync::Arc::new(LocalStorage::open(p)?),
            Location::S3(l) => std::sync::Arc::new(S3Storage::open(l, creds)?),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(l) => f.write_str(&l.url()),
        }
    }
}

impl std::str::FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Location> {
        Location::parse(s)
    }
}

/// An object being built (see [`Storage::spool`]). Dropped without [`Spool::finish`], it
/// leaves nothing behind.
pub trait Spool: Send {
    fn write(&mut self, bytes: &[u8]) -> Result<()>;

    /// Stores what was written under `name`, with the guarantees of [`Storage::put`].
    /// `storage` is the storage the caller holds (the one that made the spool, or a wrapper
    /// around it): a spool that keeps its bytes puts them there, so a wrapper's faults apply.
    fn finish(self: Box<Self>, storage: &dyn Storage, name: &str) -> Result<()>;
}

/// The default spool: bytes in memory, one put at the end.
struct MemSpool {
    kind: Kind,
    bytes: Vec<u8>,
}

impl Spool for MemSpool {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(self: Box<Self>, storage: &dyn Storage, name: &str) -> Result<()> {
        storage.put(self.kind, name, &self.bytes)
    }
}

/// How an object is named in messages: `location/kind/name` (`location/name` for the
/// config, which sits at the top).
pub fn object_path(storage: &dyn Storage, kind: Kind, name: &str) -> String {
    let location = storage.location();
    let location = location.trim_end_matches('/');
    match kind {
        Kind::Config => format!("{location}/{name}"),
        _ => format!("{location}/{}/{name}", kind.dir()),
    }
}

/// Refuses a name outside the rule in the module documentation.
pub fn check_name(kind: Kind, name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{:?} is not a valid name for a {} object (1-128 of [0-9A-Za-z._@-], not starting with '.')",
            name,
            kind.dir()
        )))
    }
}

/// Checks that `range` lies inside an object of `size` bytes.
fn check_range(object: &str, size: u64, range: &Range<u64>) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(Error::Corrupt {
            path: object.into(),
            offset: range.start,
            what: format!("range {}..{} asked of an object of {size} bytes", range.start, range.end),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod conformance;
