//! Micro-benchmarks of the engine's hot paths: chunking, chunk naming, compression,
//! decompression, index lookups and tree blobs.
//!
//! Run with `cargo bench --bench engine` (about two minutes on 2 cores), or
//! `cargo bench --bench engine -- --test` to run every benchmark once as a smoke test.
//! Filter by group name as usual: `cargo bench --bench engine -- compression`.
//!
//! All inputs are generated deterministically (xorshift), so numbers are comparable between
//! runs and machines; nothing is read from disk except the SQLite index built in a tempdir.

use coffer::chunker::{self, Hasher, Params};
use coffer::config::ChunkerConfig;
use coffer::crypto::Cipher;
use coffer::id::{ChunkId, Id, PackId};
use coffer::index::{Filter, Index};
use coffer::pack::{self, BlobKind, Compression, Entry, Finished};
use coffer::tree::{ChunkRef, Node, NodeKind, Tree};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::time::Duration;

const MIB: usize = 1 << 20;
/// Size of the chunking input.
const CHUNK_INPUT: usize = 64 * MIB;
/// Chunk size for the per-chunk benchmarks: a large chunk (twice the default average of
/// 256 KiB, within the default maximum of 1 MiB).
const CHUNK: usize = 512 * 1024;
/// Chunk rows in the index benchmark.
const INDEX_ROWS: u64 = 200_000;
const ROWS_PER_PACK: u64 = 1_000;
const TREE_ENTRIES: usize = 1_000;

/// xorshift64: the same generator the unit tests use, eight output bytes per step.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pseudo-random (incompressible) bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text that compresses like a plain-SQL dump: COPY rows of an `alf_content_url`-like table
/// with store URLs, uuids, sizes and mime types.
fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const MIME: &[&str] = &["application/pdf", "text/plain", "image/png", "application/msword", "text/xml"];
    const WORDS: &[&str] = &["alfresco", "content", "store", "node", "workspace", "SpacesStore", "archive", "version"];
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 256);
    let mut id = 1000u64;
    while out.len() < len {
        id += 1 + rng.below(3);
        let u = [rng.next(), rng.next()];
        let line = format!(
            "{id}\tstore://20{:02}/{}/{}/{}/{}/{:08x}-{:04x}-{:04x}-{:04x}-{:012x}.bin\t{}\t{}\t{}\t{}\\N\n",
            18 + rng.below(8),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            u[0] >> 32,
            (u[0] >> 16) & 0xffff,
            u[0] & 0xffff,
            u[1] >> 48,
            u[1] & 0xffff_ffff_ffff,
            MIME[rng.below(MIME.len() as u64) as usize],
            rng.below(10_000_000),
            WORDS[rng.below(WORDS.len() as u64) as usize],
            if rng.below(4) == 0 { "orphan\t" } else { "" },
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn id_of(i: u64) -> Id {
    Id(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn params() -> Params {
    Params::with_seed(&ChunkerConfig::default_with_seed(1), 1)
}

fn bench_chunking(c: &mut Criterion) {
    let data = random_bytes(42, CHUNK_INPUT);
    let p = params();
    // Sanity: the cut points tile the input.
    let total: usize = chunker::cuts(&data, p).map(|(_, l)| l).sum();
    assert_eq!(total, data.len());

    let mut g = c.benchmark_group("chunking");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc_cuts_64MiB", |b| b.iter(|| chunker::cuts(black_box(&data), p).count()));
    g.bench_function("fastcdc_stream_64MiB", |b| {
        b.iter(|| chunker::stream(black_box(&data[..]), p).map(|r| r.expect("in-memory read").len()).sum::<usize>())
    });
    g.finish();
}

fn bench_hashing(c: &mut Criterion) {
    let data = random_bytes(7, CHUNK);
    let h = Hasher::new([9u8; 32]);
    let mut g = c.benchmark_group("hashing");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("blake3_keyed_512KiB", |b| b.iter(|| h.id(black_box(&data))));
    g.finish();
}

fn bench_compression(c: &mut Criterion) {
    let text = text_bytes(3, CHUNK);
    let random = random_bytes(5, CHUNK);
    let (tc, tstored) = pack::compress(&text, 3);
    assert_eq!(tc, Compression::Zstd, "text-like data must compress");
    let (rc, rstored) = pack::compress(&random, 3);
    assert_eq!(rc, Compression::None, "random data must be stored raw");
    assert_eq!(rstored, random);
    eprintln!(
        "compression: text-like 512 KiB -> {} bytes (ratio {:.2}); random stays raw",
        tstored.len(),
        text.len() as f64 / tstored.len() as f64
    );

    let mut g = c.benchmark_group("compression");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("zstd3_text_512KiB", |b| b.iter(|| pack::compress(black_box(&text), 3)));
    g.bench_function("zstd3_random_512KiB_raw", |b| b.iter(|| pack::compress(black_box(&random), 3)));
    g.finish();
}

fn bench_decompression(c: &mut Criterion) {
    let text = text_bytes(3, CHUNK);
    let (comp, stored) = pack::compress(&text, 3);
    assert_eq!(comp, Compression::Zstd);
    let h = Hasher::new([9u8; 32]);
    let entry = Entry {
        id: h.id(&text),
        kind: BlobKind::Data,
        compression: comp,
        offset: pack::HEADER_LEN,
        stored_len: stored.len() as u32,
        raw_len: text.len() as u32,
    };
    let random = random_bytes(5, CHUNK);
    let raw_entry = Entry {
        id: h.id(&random),
        kind: BlobKind::Data,
        compression: Compression::None,
        offset: pack::HEADER_LEN,
        stored_len: random.len() as u32,
        raw_len: random.len() as u32,
    };
    let p = Path::new("bench.pack");
    assert_eq!(pack::decode_blob(p, &entry, &stored, &h, &Cipher::None).expect("decodes"), text);

    let mut g = c.benchmark_group("decompression");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    // Throughput in raw (decompressed) bytes.
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("zstd_text_512KiB", |b| {
        b.iter(|| zstd::bulk::decompress(black_box(&stored), CHUNK).expect("decompresses"))
    });
    g.bench_function("decode_blob_text_512KiB_verified", |b| {
        b.iter(|| pack::decode_blob(p, &entry, black_box(&stored), &h, &Cipher::None).expect("decodes"))
    });
    g.bench_function("decode_blob_raw_512KiB_verified", |b| {
        b.iter(|| pack::decode_blob(p, &raw_entry, black_box(&random), &h, &Cipher::None).expect("decodes"))
    });
    // The same raw blob sealed: what encryption adds to every read.
    let sealed_cipher = Cipher::new(&[4u8; 32]);
    let sealed =
        pack::seal_blob(&sealed_cipher, &raw_entry.id, BlobKind::Data, std::borrow::Cow::Borrowed(&random[..]));
    let sealed_entry = Entry { stored_len: sealed.len() as u32, ..raw_entry };
    g.bench_function("decode_blob_raw_512KiB_sealed_verified", |b| {
        b.iter(|| pack::decode_blob(p, &sealed_entry, black_box(&sealed), &h, &sealed_cipher).expect("decodes"))
    });
    g.finish();
}

/// Sealing and opening alone (XChaCha20-Poly1305 vs AES-256-GCM on this machine: the
/// choice in `crypto` rests on these figures).
fn bench_encryption(c: &mut Criterion) {
    use aes_gcm::aead::{Aead, KeyInit};
    let data = random_bytes(6, CHUNK);
    let cipher = Cipher::new(&[4u8; 32]);
    let sealed = cipher.seal(b"ad", &data);
    let gcm = aes_gcm::Aes256Gcm::new(&[4u8; 32].into());
    let nonce = aes_gcm::Nonce::from([1u8; 12]);
    let gcm_sealed = gcm.encrypt(&nonce, &data[..]).expect("encrypts");
    let mut g = c.benchmark_group("encryption");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("xchacha20poly1305_seal_512KiB", |b| b.iter(|| cipher.seal(b"ad", black_box(&data))));
    g.bench_function("xchacha20poly1305_open_512KiB", |b| b.iter(|| cipher.open(b"ad", black_box(&sealed))));
    g.bench_function("aes256gcm_seal_512KiB", |b| b.iter(|| gcm.encrypt(&nonce, black_box(&data[..]))));
    g.bench_function("aes256gcm_open_512KiB", |b| b.iter(|| gcm.decrypt(&nonce, black_box(&gcm_sealed[..]))));
    g.finish();
}

fn bench_index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut idx = Index::create(&dir.path().join("index.sqlite"), "bench").expect("index");
    let mut filter = Filter::with_capacity(INDEX_ROWS);
    let started = std::time::Instant::now();
    let mut n = 0u64;
    let mut pack_no = 0u64;
    while n < INDEX_ROWS {
        let mut offset = pack::HEADER_LEN;
        let mut entries = Vec::with_capacity(ROWS_PER_PACK as usize);
        for _ in 0..ROWS_PER_PACK.min(INDEX_ROWS - n) {
            let id = id_of(n);
            filter.insert(&id);
            let stored_len = 100_000 + (n % 400_000) as u32;
            entries.push(Entry {
                id: ChunkId(id),
                kind: BlobKind::Data,
                compression: Compression::Zstd,
                offset,
                stored_len,
                raw_len: stored_len * 2,
            });
            offset += stored_len as u64;
            n += 1;
        }
        let size = offset + (entries.len() * pack::ENTRY_LEN + pack::FOOTER_LEN) as u64;
        let pack =
            Finished { id: PackId(Id(*blake3::hash(format!("pack {pack_no}").as_bytes()).as_bytes())), size, entries };
        idx.add_pack(&pack, 0).expect("add_pack");
        pack_no += 1;
    }
    eprintln!("index: {INDEX_ROWS} chunk rows in {pack_no} packs inserted in {:.2?}", started.elapsed());
    assert_eq!(idx.chunk_count().expect("count"), INDEX_ROWS);

    let present: Vec<ChunkId> = (0..4096).map(|i| ChunkId(id_of(i * 48 % INDEX_ROWS))).collect();
    let absent: Vec<ChunkId> = (0..4096).map(|i| ChunkId(id_of(INDEX_ROWS + 1 + i))).collect();
    assert!(present.iter().all(|id| idx.contains(id).unwrap()));
    assert!(absent.iter().all(|id| !idx.contains(id).unwrap()));
    let fp = absent.iter().filter(|id| filter.may_contain(&id.0)).count();
    eprintln!("filter: {fp}/{} absent ids were false positives", absent.len());

    let mut g = c.benchmark_group("index");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("contains_present", |b| {
        b.iter(|| {
            i = (i + 1) % present.len();
            idx.contains(black_box(&present[i])).expect("query")
        })
    });
    g.bench_function("contains_absent", |b| {
        b.iter(|| {
            i = (i + 1) % absent.len();
            idx.contains(black_box(&absent[i])).expect("query")
        })
    });
    g.bench_function("lookup_present", |b| {
        b.iter(|| {
            i = (i + 1) % present.len();
            idx.lookup(black_box(&present[i])).expect("query")
        })
    });
    g.bench_function("filter_may_contain_present", |b| {
        b.iter(|| {
            i = (i + 1) % present.len();
            filter.may_contain(black_box(&present[i].0))
        })
    });
    g.bench_function("filter_may_contain_absent", |b| {
        b.iter(|| {
            i = (i + 1) % absent.len();
            filter.may_contain(black_box(&absent[i].0))
        })
    });
    g.finish();
    drop(idx);
    drop(dir);
}

/// A 1000-entry directory listing: mostly files of one to a few chunks, some subdirectories
/// and symlinks.
fn sample_tree() -> Tree {
    let mut rng = XorShift::new(11);
    let mut nodes = Vec::with_capacity(TREE_ENTRIES);
    for i in 0..TREE_ENTRIES {
        let mut n = Node {
            name: format!("{:08x}-{:04x}-{i:05}.bin", rng.next() as u32, rng.next() as u16).into_bytes(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1_700_000_000_000_000_000 + rng.below(1 << 40) as i64,
            size: 0,
            content: vec![],
            subtree: None,
            target: None,
            ..Node::default()
        };
        match i % 20 {
            0 => {
                n.kind = NodeKind::Dir;
                n.mode = 0o755;
                n.subtree = Some(*id_of(i as u64).as_bytes());
            }
            1 => {
                let t = format!("../{:05}/target", rng.below(100_000)).into_bytes();
                n.kind = NodeKind::Symlink;
                n.mode = 0o777;
                n.size = t.len() as u64;
                n.target = Some(t);
            }
            _ => {
                let chunks = 1 + rng.below(4);
                n.content = (0..chunks)
                    .map(|j| ChunkRef::new(ChunkId(id_of(i as u64 * 8 + j)), 1 + rng.below(2 << 20) as u32))
                    .collect();
                n.size = n.content.iter().map(|c| c.len as u64).sum();
            }
        }
        nodes.push(n);
    }
    let mut t = Tree { nodes };
    t.sort();
    t
}

fn bench_tree(c: &mut Criterion) {
    let tree = sample_tree();
    let enc = tree.encode();
    let p = Path::new("bench.tree");
    assert_eq!(Tree::decode(p, 0, &enc).expect("decodes"), tree);
    eprintln!("tree: {TREE_ENTRIES} entries encode to {} bytes", enc.len());

    let mut g = c.benchmark_group("tree");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(enc.len() as u64));
    g.bench_function("encode_1000", |b| b.iter(|| black_box(&tree).encode()));
    g.bench_function("decode_1000", |b| b.iter(|| Tree::decode(p, 0, black_box(&enc)).expect("decodes")));
    g.finish();
}

criterion_group!(
    benches,
    bench_chunking,
    bench_hashing,
    bench_compression,
    bench_decompression,
    bench_encryption,
    bench_index,
    bench_tree
);
criterion_main!(benches);
