//! The behaviour every [`Storage`] promises, as one check run on each implementation (and,
//! with the S3 storage, on a real object store).

use super::*;
use crate::error::ErrorKind;
use std::sync::Arc;

/// Runs every check on an empty storage.
pub fn check(s: &dyn Storage) {
    for kind in Kind::ALL {
        assert_eq!(s.list(kind).unwrap(), vec![], "{kind:?} not empty at the start");
    }
    // Put, read whole and by range, size.
    let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    s.put(Kind::Packs, "ab01", &body).unwrap();
    assert_eq!(s.read(Kind::Packs, "ab01", None).unwrap(), body);
    assert_eq!(s.read(Kind::Packs, "ab01", Some(100..250)).unwrap(), &body[100..250]);
    assert_eq!(s.read(Kind::Packs, "ab01", Some(10_000..10_000)).unwrap(), Vec::<u8>::new());
    assert_eq!(s.size(Kind::Packs, "ab01").unwrap(), Some(10_000));
    // A range past the end is an error naming the object, not a short read.
    let e = s.read(Kind::Packs, "ab01", Some(9_000..10_001)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("packs") && e.to_string().contains("ab01"), "{e}");
    // Kinds are separate namespaces.
    assert_eq!(s.size(Kind::Sets, "ab01").unwrap(), None);
    let e = s.read(Kind::Sets, "ab01", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(matches!(e, Error::ObjectMissing { .. }) && e.to_string().contains("sets/ab01"), "{e}");
    // Put replaces; list gives names and sizes.
    s.put(Kind::Sets, "s1", b"one").unwrap();
    s.put(Kind::Sets, "s1", b"one, again").unwrap();
    s.put(Kind::Sets, "s2", b"").unwrap();
    assert_eq!(s.read(Kind::Sets, "s1", None).unwrap(), b"one, again");
    let mut l = s.list(Kind::Sets).unwrap();
    l.sort();
    let named = |l: &[ObjectInfo]| l.iter().map(|o| (o.name.clone(), o.size)).collect::<Vec<_>>();
    assert_eq!(named(&l), [("s1".to_string(), 10), ("s2".to_string(), 0)]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(l.iter().all(|o| (now - 120..=now + 120).contains(&o.modified)), "put times: {l:?}");
    s.put(Kind::Packs, "cd02", b"x").unwrap();
    let mut packs: Vec<String> = s.list(Kind::Packs).unwrap().into_iter().map(|o| o.name).collect();
    packs.sort();
    assert_eq!(packs, ["ab01", "cd02"]);
    s.put(Kind::Config, "config", b"cfg").unwrap();
    assert_eq!(named(&s.list(Kind::Config).unwrap()), [("config".to_string(), 3)]);
    // Remove: gone at once; removing again is fine.
    s.remove(Kind::Sets, "s1").unwrap();
    s.remove(Kind::Sets, "s1").unwrap();
    assert_eq!(s.size(Kind::Sets, "s1").unwrap(), None);
    assert_eq!(s.list(Kind::Sets).unwrap().len(), 1);
    // A removed pack read by range (after an earlier ranged read) is missing, not stale.
    s.remove(Kind::Packs, "cd02").unwrap();
    s.put(Kind::Packs, "cd02", b"xyz").unwrap();
    assert_eq!(s.read(Kind::Packs, "cd02", Some(1..3)).unwrap(), b"yz");
    s.remove(Kind::Packs, "cd02").unwrap();
    assert!(matches!(s.read(Kind::Packs, "cd02", Some(0..1)), Err(Error::ObjectMissing { .. })));
    // Names that could leave the kind's place are refused by every call.
    for bad in ["", "../config", "a/b", ".hidden", "nul\0", "sp ace", &"x".repeat(129)] {
        assert_eq!(s.put(Kind::Sets, bad, b"x").unwrap_err().kind(), ErrorKind::InvalidInput, "{bad:?}");
        assert!(s.read(Kind::Sets, bad, None).is_err(), "{bad:?}");
        assert!(s.remove(Kind::Sets, bad).is_err(), "{bad:?}");
    }
    // Concurrent puts of distinct objects all land whole.
    std::thread::scope(|sc| {
        for t in 0..4u8 {
            sc.spawn(move || {
                for i in 0..25u8 {
                    s.put(Kind::Index, &format!("i{t}-{i}"), &vec![t ^ i; 1000 + i as usize]).unwrap();
                }
            });
        }
    });
    // A spool becomes an object only when finished; one dropped leaves nothing.
    let mut sp = s.spool(Kind::Packs).unwrap();
    sp.write(b"built ").unwrap();
    sp.write(b"in parts").unwrap();
    assert_eq!(s.size(Kind::Packs, "ee05").unwrap(), None, "visible before it was finished");
    sp.finish(s, "ee05").unwrap();
    assert_eq!(s.read(Kind::Packs, "ee05", None).unwrap(), b"built in parts");
    let mut dropped = s.spool(Kind::Packs).unwrap();
    dropped.write(b"never finished").unwrap();
    drop(dropped);
    assert!(s.spool(Kind::Packs).unwrap().finish(s, "../x").is_err(), "a bad name is refused");
    let l = s.list(Kind::Index).unwrap();
    assert_eq!(l.len(), 100);
    for o in l {
        let b = s.read(Kind::Index, &o.name, None).unwrap();
        assert_eq!(b.len() as u64, o.size);
        assert!(b.iter().all(|&x| x == b[0]), "{} mixed", o.name);
    }
}

#[test]
fn mem_storage_keeps_the_promises() {
    check(&MemStorage::new());
}

#[test]
fn local_storage_keeps_the_promises_and_leaves_no_temp_files() {
    let d = tempfile::tempdir().unwrap();
    let s = LocalStorage::open(d.path()).unwrap();
    check(&s);
    assert!(d.path().join("packs/ab/ab01").is_file(), "packs are in packs/xx/");
    assert_eq!(std::fs::read_dir(d.path().join("tmp")).unwrap().count(), 0, "a temp file was left");
    // What is not ours in a kind's directory is not listed.
    std::fs::write(d.path().join("sets/editor~.swp"), b"x").unwrap();
    std::fs::write(d.path().join("sets/x.tmp"), b"x").unwrap();
    std::fs::write(d.path().join("index.sqlite"), b"x").unwrap();
    assert_eq!(s.list(Kind::Sets).unwrap().len(), 1);
    assert_eq!(s.list(Kind::Config).unwrap().len(), 1);
}

#[test]
fn local_storage_refuses_a_missing_or_non_directory_root() {
    let d = tempfile::tempdir().unwrap();
    assert!(LocalStorage::open(&d.path().join("missing")).is_err());
    std::fs::write(d.path().join("file"), b"x").unwrap();
    assert_eq!(LocalStorage::open(&d.path().join("file")).err().unwrap().kind(), ErrorKind::NotARepository);
    let made = LocalStorage::create(&d.path().join("new/repo")).unwrap();
    made.put(Kind::Sets, "a", b"1").unwrap();
    assert_eq!(made.read(Kind::Sets, "a", None).unwrap(), b"1");
}

#[test]
fn faulty_storage_hits_exactly_the_planned_calls() {
    let inner = Arc::new(MemStorage::new());
    let f = FaultyStorage::new(inner.clone());
    // The second put of a set fails before landing; other kinds don't count.
    f.add(Fault::nth(Op::Put, 2, Effect::Fail).on(Kind::Sets));
    f.put(Kind::Sets, "a", b"1").unwrap();
    f.put(Kind::Packs, "p", b"1").unwrap();
    let e = f.put(Kind::Sets, "b", b"2").unwrap_err();
    assert!(e.to_string().contains("mem:/sets/b") && e.to_string().contains("injected"), "{e}");
    assert_eq!(inner.size(Kind::Sets, "b").unwrap(), None);
    f.put(Kind::Sets, "c", b"3").unwrap();
    assert_eq!(f.calls(Op::Put), 4);
    // A put whose reply is lost: the object is there, the caller saw an error.
    f.add(Fault::nth(Op::Put, 1, Effect::FailAfterWrite));
    assert!(f.put(Kind::Sets, "d", b"4").is_err());
    assert_eq!(inner.read(Kind::Sets, "d", None).unwrap(), b"4");
    // Short and corrupt reads.
    f.add(Fault::nth(Op::Read, 1, Effect::Short));
    f.add(Fault::nth(Op::Read, 2, Effect::Corrupt));
    inner.put(Kind::Packs, "q", &[0u8; 64]).unwrap();
    assert_eq!(f.read(Kind::Packs, "q", None).unwrap().len(), 32);
    let c = f.read(Kind::Packs, "q", None).unwrap();
    assert_eq!((c.len(), c.iter().filter(|&&b| b != 0).count()), (64, 1));
    assert_eq!(f.read(Kind::Packs, "q", None).unwrap(), [0u8; 64]);
    // A store that goes away: every call from the third on fails, until cleared.
    f.clear();
    f.add(Fault::nth(Op::List, 3, Effect::Fail).and_after());
    assert!(f.list(Kind::Sets).is_ok() && f.list(Kind::Sets).is_ok());
    assert!(f.list(Kind::Sets).is_err() && f.list(Kind::Packs).is_err());
    f.clear();
    assert_eq!(f.list(Kind::Sets).unwrap().len(), 3);
}

#[test]
fn faulty_storage_without_faults_keeps_the_promises() {
    check(&FaultyStorage::new(Arc::new(MemStorage::new())));
}
