//! Durable file operations on the local repository directory.
//!
//! Guarantees the rest of the crate relies on: `write_atomic` leaves either the old state or
//! the complete new file under its final name, never a partial one, and the rename is durable
//! (parent directory fsynced) when it returns; a file read after `write_atomic` returned sees
//! the new bytes.

use crate::error::{IoContext, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// fsyncs a directory so renames and creations inside it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).ctx(dir)?.sync_all().ctx(dir)
}

/// Writes `bytes` to `path` through a temporary file in `tmp_dir` (same filesystem), fsync,
/// rename, fsync of the parent.
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut rnd = [0u8; 8];
    let _ = getrandom::getrandom(&mut rnd);
    let tmp = tmp_dir.join(format!("{}-{:016x}.tmp", std::process::id(), u64::from_le_bytes(rnd)));
    let result = (|| {
        let mut f = File::create(&tmp).ctx(&tmp)?;
        f.write_all(bytes).ctx(&tmp)?;
        f.sync_all().ctx(&tmp)?;
        drop(f);
        std::fs::rename(&tmp, path).ctx(path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
