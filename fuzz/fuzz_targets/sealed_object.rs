//! `sealed_object`: the sealed envelope of index objects, set manifests and leases
//! (`nonce | ciphertext | tag`, the object's kind and name as associated data). No panic on
//! any stored bytes; what is put reads back equal; the same bytes under another name, or with
//! any byte changed, never authenticate.
//!
//! Input layout: `mode u8 | rest`. Even mode: `rest` is what storage holds under `sets/<n>`.
//! Odd mode: `rest` is a plaintext put through the sealed door, then read back, read under
//! another name, and read with one byte flipped (the byte picked from the plaintext's length).
#![no_main]

use coffer::crypto::Cipher;
use coffer::storage::{Kind, MemStorage, SealedStorage, Storage};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const NAME: &str = "5cb8f645b6965188604b78a52d1ed84cb09ac3eda33c03ae05d06ed8bbdf8ae3";
const OTHER: &str = "0000f645b6965188604b78a52d1ed84cb09ac3eda33c03ae05d06ed8bbdf8ae3";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mem = Arc::new(MemStorage::new());
    let sealed = SealedStorage::new(mem.clone(), Cipher::new(&[7u8; 32]));
    if mode & 1 == 0 {
        mem.put(Kind::Sets, NAME, rest).expect("memory put");
        // Forging a tag is out of the fuzzer's reach: any stored bytes are refused, cleanly.
        assert!(sealed.read(Kind::Sets, NAME, None).is_err(), "unsealed bytes authenticated");
        return;
    }
    sealed.put(Kind::Sets, NAME, rest).expect("sealed put");
    assert_eq!(sealed.read(Kind::Sets, NAME, None).expect("reads back"), rest);
    let stored = mem.read(Kind::Sets, NAME, None).expect("stored");
    assert_eq!(stored.len(), rest.len() + Cipher::new(&[7u8; 32]).overhead());
    mem.put(Kind::Sets, OTHER, &stored).expect("memory put");
    assert!(sealed.read(Kind::Sets, OTHER, None).is_err(), "an object swapped to another name authenticated");
    mem.put(Kind::Index, NAME, &stored).expect("memory put");
    assert!(sealed.read(Kind::Index, NAME, None).is_err(), "an object moved to another kind authenticated");
    let mut flipped = stored.clone();
    let at = rest.len() % flipped.len();
    flipped[at] ^= 0x80;
    mem.put(Kind::Sets, NAME, &flipped).expect("memory put");
    assert!(sealed.read(Kind::Sets, NAME, None).is_err(), "a changed byte at {at} authenticated");
});
