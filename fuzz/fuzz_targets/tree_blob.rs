//! `tree_blob`: a tree blob as stored in a pack. No panic on any input; a tree that decodes
//! re-encodes to a blob that decodes equal (and re-encodes to the same bytes again: the
//! encoding of a decoded tree is canonical).
#![no_main]

use coffer::tree::{Tree, MAGIC, VERSION};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Odd first byte: the rest is the postcard body behind a valid header, so the fuzzer
    // does not spend its time rediscovering the magic. Even: the bytes as they are.
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode & 1 == 1 {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(rest);
        b
    } else {
        rest.to_vec()
    };
    let path = Path::new("repo/packs/xx/pack");
    if let Ok(tree) = Tree::decode(path, 1234, &bytes) {
        let enc = tree.encode();
        let again = Tree::decode(path, 0, &enc).expect("a decoded tree re-encodes to a valid blob");
        assert_eq!(again, tree, "tree round trip changed it");
        assert_eq!(again.encode(), enc, "tree encoding is not deterministic");
        for n in &tree.nodes {
            assert!(tree.find(&n.name).is_some(), "find misses a decoded entry");
            let _ = (n.subtree_id(), n.name_lossy(), n.content.iter().map(|c| c.chunk_id()).collect::<Vec<_>>());
        }
    }
});
