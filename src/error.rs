//! The library's error type.
//!
//! Every error that comes from bytes on disk names the file (and, for decoding errors, the
//! offset); callers match on [`ErrorKind`] rather than on message text. `anyhow` is used only
//! at the CLI edge.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}: not a coffer repository ({why})", path.display())]
    NotARepository { path: PathBuf, why: String },

    #[error("{}: format version {found} is not supported (this coffer reads version {supported})", path.display())]
    UnsupportedVersion { path: PathBuf, found: u32, supported: String },

    #[error("{}: corrupt at offset {offset}: {what}", path.display())]
    Corrupt { path: PathBuf, offset: u64, what: String },

    /// A set's trees contradict themselves, their blobs or their manifest (a tree deeper than
    /// any backup makes, expanding beyond what the manifest declares, a chunk claimed with a
    /// length it does not have). `at` names the set, component and path, or the file.
    #[error("{at}: {what}")]
    BadTree { at: String, what: String },

    #[error("{}: index database: {source}", path.display())]
    Index { path: PathBuf, source: rusqlite::Error },

    /// An object a storage was asked for is not there (`object`: location/kind/name).
    #[error("{object}: no such object")]
    ObjectMissing { object: String },

    /// A storage operation failed (`object`: location/kind/name, or the kind's place).
    #[error("{object}: {source}")]
    Storage { object: String, source: std::io::Error },

    #[error("{0}")]
    InvalidInput(String),

    #[error("{0}")]
    NotFound(String),

    #[error("repository is locked: {0}")]
    Locked(String),

    #[error("component {component:?}: command {command} failed ({status})\n--- stderr (tail) ---\n{stderr}")]
    CommandFailed { component: String, command: String, status: String, stderr: String },

    #[error("{0}")]
    Failed(String),

    /// No key object of the repository opens with the password given.
    #[error("wrong password, or no key in {repo} opens with it")]
    WrongPassword { repo: String },
}

/// What went wrong, for callers that branch on it (the CLI maps kinds to exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Io,
    NotARepository,
    UnsupportedVersion,
    Corrupt,
    Index,
    InvalidInput,
    NotFound,
    Locked,
    CommandFailed,
    Failed,
    WrongPassword,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::NotARepository { .. } => ErrorKind::NotARepository,
            Error::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Error::Corrupt { .. } | Error::BadTree { .. } => ErrorKind::Corrupt,
            Error::Index { .. } => ErrorKind::Index,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) | Error::ObjectMissing { .. } => ErrorKind::NotFound,
            Error::Storage { .. } => ErrorKind::Io,
            Error::Locked(_) => ErrorKind::Locked,
            Error::CommandFailed { .. } => ErrorKind::CommandFailed,
            Error::Failed(_) => ErrorKind::Failed,
            Error::WrongPassword { .. } => ErrorKind::WrongPassword,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), offset, what: what.into() }
    }

    pub fn index(path: &Path, source: rusqlite::Error) -> Error {
        Error::Index { path: path.to_path_buf(), source }
    }
}

/// Attach a path to an `io::Error` (`.ctx(path)?`).
pub trait IoContext<T> {
    fn ctx(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }
}
