//! Chunk-pair delta throughput: deltas/s per core and bytes out at several zstd levels, on
//! synthetic firmware chunk pairs (`fwrepo-synth`), one thread (so the figures are per core).
//!
//! ```text
//! cargo run --release -p fwrepo-server --example bench-deltas [-- --pairs N] [-- --files OLD NEW]...
//! ```
//!
//! With `--files OLD NEW` (repeatable) the pairs are real: each file cut with the default
//! chunker, the changed chunks of NEW paired with bases by `choose_bases`, as a client would.
//!
//! Pairs: a 64 KiB-average chunk of a synthetic firmware image (the repository's default
//! chunk size) against the chunk in its place in the next version, with the edits the
//! synthetic series makes inside one chunk: a few patched bytes, an inserted run, a removed
//! run, a shift; plus chunks sent without a base (zstd alone).
//!
//! Measured 2026-12-02 (2 shared cores under other builds, so absolute rates are low and
//! noisy; the ratios held across runs), one thread, bases chosen by `choose_bases` (several
//! per chunk where a chunk overlaps several seed chunks):
//!
//! | pairs | level 1 | 3 | 6 | 9 | 12 | 19 |
//! |---|---|---|---|---|---|---|
//! | GRUB deb12u1 → u2, 3 EFI images, 60 changed chunks: bytes | 486,738 | 129,526 | 117,358 | 112,190 | 109,817 | 99,358 |
//! | same: deltas/s per core | 2,159 | 1,841 | 443 | 326 | 52 | 18 |
//! | synthetic, 200 pairs: bytes | 3,672,585 | 3,671,064 | 3,669,526 | 3,669,527 | 3,668,517 | 3,669,548 |
//! | synthetic: deltas/s per core | 14,195 | 10,954 | 2,811 | 3,773 | 887 | 195 |
//!
//! (GRUB: `--files` with `usr/lib/grub/x86_64-efi/monolithic/{grubx64,gcdx64,grubnetx64}.efi`
//! of both versions; decoding at level 3 ran at 26,138 deltas/s.)
//!
//! So the server's on-demand default, `ON_DEMAND_LEVEL`, is 3: past it the bytes shrink by
//! at most 13% (GRUB at 9) to 23% (GRUB at 19) and not at all on high-entropy images, for
//! 4–100× the CPU; below it (level 1) GRUB's deltas grow almost fourfold (level 1 makes poor
//! use of a prefix of several chunks). The common update path does
//! not pay this trade: `fwrepo publish` precomputes at 19 (`fwrepo_chunk::delta::DEFAULT_LEVEL`),
//! where CPU is spent once, offline. Decoding costs the client far less than either.

use std::time::Instant;

use fwrepo_chunk::bases::choose_bases;
use fwrepo_chunk::{Chunker, ChunkerParams, Digest, delta};
use fwrepo_synth::{Change, Rng};

struct Pair {
    base: Option<Vec<u8>>,
    target: Vec<u8>,
}

fn pairs(n: usize) -> Vec<Pair> {
    let mut rng = Rng::new(2024);
    let image = fwrepo_synth::firmware_image(&mut rng, 16 << 20);
    let edits = [Change::SmallPatch, Change::Insert, Change::Remove, Change::Shift];
    (0..n)
        .map(|i| {
            let len = rng.range(32 << 10, 96 << 10);
            let at = rng.range(0, image.len() - len);
            let base = image[at..at + len].to_vec();
            if i % 5 == 4 {
                return Pair { base: None, target: base };
            }
            let mut target = fwrepo_synth::mutate(&mut rng, &base, edits[i % 4]);
            // An insert inside one chunk is short; keep the pair chunk-sized.
            target.truncate(base.len() + (8 << 10));
            Pair { base: Some(base), target }
        })
        .collect()
}

/// The changed chunks of `new` against the chunks of `old`, with their bases.
fn file_pairs(old: &[u8], new: &[u8]) -> Vec<Pair> {
    let chunker = Chunker::new(ChunkerParams::default());
    let cut = |data: &[u8]| -> Vec<(Digest, u32, std::ops::Range<usize>)> {
        chunker.chunks(data).map(|r| (Digest::of(&data[r.clone()]), r.len() as u32, r)).collect()
    };
    let (o, n) = (cut(old), cut(new));
    let ids = |v: &[(Digest, u32, std::ops::Range<usize>)]| v.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>();
    let bases = choose_bases(&ids(&n), &ids(&o));
    let held: std::collections::HashSet<Digest> = o.iter().map(|c| c.0).collect();
    n.iter()
        .zip(bases)
        .filter(|(c, _)| !held.contains(&c.0))
        .map(|(c, b)| Pair {
            // The prefix a delta is made against: the bases' bytes, concatenated in order.
            base: (!b.is_empty()).then(|| {
                b.iter()
                    .flat_map(|b| old[o.iter().find(|x| x.0 == *b).expect("base of old").2.clone()].to_vec())
                    .collect()
            }),
            target: new[c.2.clone()].to_vec(),
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut real = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if a == "--files" {
            let old = std::fs::read(&args[i + 1]).expect("read OLD");
            let new = std::fs::read(&args[i + 2]).expect("read NEW");
            real.extend(file_pairs(&old, &new));
        }
    }
    let n = args
        .iter()
        .position(|a| a == "--pairs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200usize);
    let pairs = if real.is_empty() { pairs(n) } else { real };
    let n = pairs.len();
    let target_bytes: usize = pairs.iter().map(|p| p.target.len()).sum();
    println!("{n} chunk pairs, {:.1} MiB of targets, one thread", target_bytes as f64 / (1 << 20) as f64);
    println!(
        "{:>5} {:>12} {:>10} {:>12} {:>12} {:>12}",
        "level", "deltas/s", "MB/s", "bytes out", "based out", "alone out"
    );
    for level in [1, 3, 6, 9, 12, 19] {
        let started = Instant::now();
        let (mut out, mut based, mut alone) = (0usize, 0usize, 0usize);
        for p in &pairs {
            let (_, payload) = delta::encode(&p.target, p.base.as_deref(), level).expect("encode");
            out += payload.len();
            if p.base.is_some() { based += payload.len() } else { alone += payload.len() }
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "{level:>5} {:>12.0} {:>10.1} {out:>12} {based:>12} {alone:>12}",
            n as f64 / s,
            target_bytes as f64 / s / 1e6
        );
    }
    // Decoding, for the client's side of the cost.
    let encoded: Vec<_> = pairs
        .iter()
        .map(|p| delta::encode(&p.target, p.base.as_deref(), fwrepo_server::ON_DEMAND_LEVEL).expect("encode"))
        .collect();
    let started = Instant::now();
    for (p, (enc, payload)) in pairs.iter().zip(&encoded) {
        let base = if *enc == delta::Encoding::ZstdWithBase { p.base.as_deref() } else { None };
        let got = delta::decode(*enc, payload, base, p.target.len()).expect("decode");
        assert_eq!(got, p.target);
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "decode at level {}: {:.0} deltas/s, {:.1} MB/s",
        fwrepo_server::ON_DEMAND_LEVEL,
        n as f64 / s,
        target_bytes as f64 / s / 1e6
    );
}
