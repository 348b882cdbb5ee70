//! A storage that misbehaves on purpose (after Kopia's `blobtesting` faulty storage): wraps
//! another and makes chosen calls fail, land and then fail, come back short or with a flipped
//! bit, or wait. Tests loop over the call index ("fail the Nth put") to prove that every step
//! of a backup or prune can fail without leaving a repository that verify rejects.

use super::{object_path, Kind, ObjectInfo, Storage};
use crate::error::{Error, Result};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Put,
    List,
    Size,
    Remove,
}

/// What happens to a call a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The call fails before doing anything.
    Fail,
    /// The call is done (a put lands, a remove removes), then reports failure: the lost reply.
    FailAfterWrite,
    /// A read returns only the first half of the bytes it should.
    Short,
    /// A read returns its bytes with one bit flipped in the middle.
    Corrupt,
    /// The call waits this long, then goes on normally.
    Delay(Duration),
}

/// One planned fault: on calls of `op` (to objects of `kind`, or any kind), counted from 1,
/// the `nth` one; with `sticky`, that one and every later one (the store went away).
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    pub kind: Option<Kind>,
    pub nth: u64,
    pub sticky: bool,
    pub effect: Effect,
}

impl Fault {
    /// The `nth` call of `op` (any kind) gets `effect`.
    pub fn nth(op: Op, nth: u64, effect: Effect) -> Fault {
        Fault { op, kind: None, nth, sticky: false, effect }
    }

    /// Only calls on objects of `kind` count.
    pub fn on(mut self, kind: Kind) -> Fault {
        self.kind = Some(kind);
        self
    }

    /// The `nth` call and every later one get the effect.
    pub fn and_after(mut self) -> Fault {
        self.sticky = true;
        self
    }
}

struct Planned {
    fault: Fault,
    seen: AtomicU64,
}

pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    faults: Mutex<Vec<Arc<Planned>>>,
    calls: [AtomicU64; 5],
}

impl FaultyStorage {
    pub fn new(inner: Arc<dyn Storage>) -> FaultyStorage {
        FaultyStorage { inner, faults: Mutex::new(Vec::new()), calls: Default::default() }
    }

    /// Plans a fault; faults added later see only calls made after they were added.
    pub fn add(&self, fault: Fault) {
        self.lock().push(Arc::new(Planned { fault, seen: AtomicU64::new(0) }));
    }

    /// Forgets every planned fault.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many calls of `op` were made so far (to size a loop over the call index).
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op as usize].load(SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Planned>>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the call and returns the effect of the first fault that hits it.
    fn effect(&self, op: Op, kind: Kind) -> Option<Effect> {
        self.calls[op as usize].fetch_add(1, SeqCst);
        let faults = self.lock().clone();
        let mut hit = None;
        for p in faults.iter().filter(|p| p.fault.op == op && p.fault.kind.is_none_or(|k| k == kind)) {
            let n = p.seen.fetch_add(1, SeqCst) + 1;
            let hits = n == p.fault.nth || (p.fault.sticky && n > p.fault.nth);
            if hits && hit.is_none() {
                hit = Some(p.fault.effect);
            }
        }
        if let Some(Effect::Delay(d)) = hit {
            std::thread::sleep(d);
            return None;
        }
        hit
    }

    fn injected(&self, op: Op, kind: Kind, name: &str) -> Error {
        Error::Storage {
            object: object_path(self, kind, name),
            source: std::io::Error::other(format!("injected fault ({op:?})")),
        }
    }
}

impl Storage for FaultyStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn read(&self, kind: Kind, name: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        match self.effect(Op::Read, kind) {
            Some(Effect::Fail) => Err(self.injected(Op::Read, kind, name)),
            Some(Effect::Short) => {
                let mut b = self.inner.read(kind, name, range)?;
                b.truncate(b.len() / 2);
                Ok(b)
            }
            Some(Effect::Corrupt) => {
                let mut b = self.inner.read(kind, name, range)?;
                let mid = b.len() / 2;
                if let Some(x) = b.get_mut(mid) {
                    *x ^= 0x10;
                }
                Ok(b)
            }
            Some(Effect::FailAfterWrite) => {
                self.inner.read(kind, name, range)?;
                Err(self.injected(Op::Read, kind, name))
            }
            _ => self.inner.read(kind, name, range),
        }
    }

    fn put(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<()> {
        match self.effect(Op::Put, kind) {
            Some(Effect::Fail) => Err(self.injected(Op::Put, kind, name)),
            Some(Effect::FailAfterWrite) => {
                self.inner.put(kind, name, bytes)?;
                Err(self.injected(Op::Put, kind, name))
            }
            _ => self.inner.put(kind, name, bytes),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        match self.effect(Op::List, kind) {
            Some(Effect::Fail) | Some(Effect::FailAfterWrite) => Err(self.injected(Op::List, kind, "*")),
            Some(Effect::Short) => {
                let mut l = self.inner.list(kind)?;
                l.truncate(l.len() / 2);
                Ok(l)
            }
            _ => self.inner.list(kind),
        }
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        match self.effect(Op::Size, kind) {
            Some(Effect::Fail) | Some(Effect::FailAfterWrite) => Err(self.injected(Op::Size, kind, name)),
            _ => self.inner.size(kind, name),
        }
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        match self.effect(Op::Remove, kind) {
            Some(Effect::Fail) => Err(self.injected(Op::Remove, kind, name)),
            Some(Effect::FailAfterWrite) => {
                self.inner.remove(kind, name)?;
                Err(self.injected(Op::Remove, kind, name))
            }
            _ => self.inner.remove(kind, name),
        }
    }
}
