//! coffer: a content-addressed, deduplicating archiver for multi-part application backups.
//!
//! The library holds all behaviour; `src/main.rs` and `src/cli/` only parse, call and print.
//! See `docs/architecture.md` for the map of modules and `docs/format.md` for the on-disk
//! format they implement.
pub mod backup;
pub mod browse;
pub mod capture;
pub mod catalog;
pub mod chunker;
pub mod clock;
pub mod config;
pub mod consistency;
pub mod content;
pub mod copy;
pub mod crypto;
pub mod dump;
pub mod envelope;
pub mod error;
pub mod filecache;
pub mod id;
pub mod index;
pub mod indexobj;
pub mod lock;
pub mod mount;
pub mod pack;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod scatter;
pub mod set;
pub mod setdef;
pub mod sink;
pub mod solr;
pub mod storage;
pub mod store;
pub mod sys;
pub mod tree;
pub mod treewalk;
pub mod verify;
pub mod walk;

pub use error::{Error, ErrorKind, Result};
