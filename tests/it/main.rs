//! The integration-test binary: drives the real `coffer` binary and the library against
//! real directories, a real PostgreSQL server and real tools.
mod cache_trust;
mod catalog_cache;
mod copy;
mod damage;
mod encryption;
mod engine;
mod faults;
mod hostile;
mod hostile_trees;
mod mount;
mod pg_selftest;
mod private;
mod prune;
mod s3;
mod sets;
mod special;
mod storage_v2;
mod support;
