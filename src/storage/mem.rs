//! Objects in memory, for tests: the guarantees of [`super::Storage`] hold trivially (a put
//! replaces the object under a lock), and a test can look at or damage what was stored.

use super::{check_name, check_range, object_path, Kind, ObjectInfo, Storage};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Each object with the time it was put.
type Objects = BTreeMap<(Kind, String), (i64, Arc<Vec<u8>>)>;

#[derive(Default)]
pub struct MemStorage {
    objects: Mutex<Objects>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Replaces an object's bytes behind the trait's back (a test damaging a repository).
    pub fn poke(&self, kind: Kind, name: &str, bytes: Vec<u8>) {
        let modified = self.lock().get(&(kind, name.to_owned())).map_or_else(now, |o| o.0);
        self.lock().insert((kind, name.to_owned()), (modified, Arc::new(bytes)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemStorage {
    fn location(&self) -> String {
        "mem:".into()
    }

    fn read(&self, kind: Kind, name: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        check_name(kind, name)?;
        let obj = self.lock().get(&(kind, name.to_owned())).map(|o| o.1.clone());
        let Some(obj) = obj else { return Err(Error::ObjectMissing { object: object_path(self, kind, name) }) };
        match range {
            None => Ok(obj.to_vec()),
            Some(r) => {
                check_range(&object_path(self, kind, name), obj.len() as u64, &r)?;
                Ok(obj[r.start as usize..r.end as usize].to_vec())
            }
        }
    }

    fn put(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(kind, name)?;
        self.lock().insert((kind, name.to_owned()), (now(), Arc::new(bytes.to_vec())));
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .lock()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), (modified, b))| ObjectInfo {
                name: name.clone(),
                size: b.len() as u64,
                modified: *modified,
            })
            .collect())
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        check_name(kind, name)?;
        Ok(self.lock().get(&(kind, name.to_owned())).map(|(_, b)| b.len() as u64))
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        check_name(kind, name)?;
        self.lock().remove(&(kind, name.to_owned()));
        Ok(())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
