//! Which chunker sizes deduplicate best between nights? Chunks two versions of a data set
//! with coffer's chunker for a grid of (min, avg, max) and prints, per setting, how many bytes
//! of the second version are in chunks the first did not have, and how many chunks it takes.
//! This is the measurement behind the defaults (docs/performance.md, "Chunk sizes").
//!
//! ```text
//! cargo bench --bench chunk_sizes -- OLD_LIST NEW_LIST [SEED...]
//! ```
//! OLD_LIST / NEW_LIST: files listing one path per line (a single dump each, or every file of a
//! contentstore night). `PARAMS="min/avg/max,..."` (KiB) overrides the grid.

use coffer::chunker::{cuts, Params};
use std::collections::HashSet;

fn read_list(p: &str) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Default)]
struct Side {
    bytes: u64,
    chunks: u64,
    novel_bytes: u64,
}

fn chunk_all(data: &[Vec<u8>], p: Params, known: &mut HashSet<[u8; 32]>) -> Side {
    let mut s = Side::default();
    for d in data {
        s.bytes += d.len() as u64;
        for (off, len) in cuts(d, p) {
            s.chunks += 1;
            if known.insert(*blake3::hash(&d[off..off + len]).as_bytes()) {
                s.novel_bytes += len as u64;
            }
        }
    }
    s
}

fn main() {
    // `cargo bench` passes "--bench"; keep only our positional arguments.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.len() < 2 {
        eprintln!("usage: cargo bench --bench chunk_sizes -- OLD_LIST NEW_LIST [SEED...]");
        return;
    }
    let load = |list: &str| -> Vec<Vec<u8>> {
        read_list(list).iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"))).collect()
    };
    let (old, new) = (load(&args[0]), load(&args[1]));
    let seeds: Vec<u64> =
        if args.len() > 2 { args[2..].iter().map(|s| s.parse().expect("seed")).collect() } else { vec![0] };
    let grid = std::env::var("PARAMS").unwrap_or_else(|_| {
        "32/128/512,64/128/1024,64/256/1024,128/256/1024,128/512/2048,256/1024/4096,512/1024/8192,512/2048/8192".into()
    });
    println!("min_k\tavg_k\tmax_k\tseed\tnew_version_bytes\tchunks\tavg_chunk\tnovel_bytes\tnovel_pct");
    for t in grid.split(',') {
        let v: Vec<usize> = t.split('/').map(|x| x.trim().parse::<usize>().expect("KiB") * 1024).collect();
        for &seed in &seeds {
            let p = Params { min: v[0], avg: v[1], max: v[2], seed };
            let mut known = HashSet::new();
            chunk_all(&old, p, &mut known);
            let n = chunk_all(&new, p, &mut known);
            println!(
                "{}\t{}\t{}\t{seed}\t{}\t{}\t{}\t{}\t{:.1}",
                v[0] / 1024,
                v[1] / 1024,
                v[2] / 1024,
                n.bytes,
                n.chunks,
                n.bytes / n.chunks.max(1),
                n.novel_bytes,
                100.0 * n.novel_bytes as f64 / n.bytes.max(1) as f64
            );
        }
    }
}
