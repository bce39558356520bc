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
//! Measured here (2 shared cores, load ~12, so absolute rates are low and noisy; the ratios
//! held across runs), one thread:
//!
//! | pairs | level 1 | 3 | 6 | 9 | 12 | 19 |
//! |---|---|---|---|---|---|---|
//! | GRUB deb12u1 → u2, 3 EFI images, 60 changed chunks: bytes | 258,852 | 170,958 | 160,095 | 153,823 | 151,667 | 140,758 |
//! | same: deltas/s per core | 2,596 | 1,667 | 377 | 289 | 22 | 16 |
//! | OVMF_CODE_4M.fd, 23 changed chunks: bytes | 1,514,663 | 1,513,415 | 1,513,394 | 1,513,395 | 1,513,395 | 1,512,990 |
//! | synthetic, 100 pairs: bytes | 1,767,678 | 1,767,727 | 1,767,637 | 1,767,637 | 1,766,584 | 1,767,181 |
//! | synthetic: deltas/s per core | 4,700 | 3,208 | 837 | 782 | 260 | 139 |
//!
//! So the server's on-demand default, `ON_DEMAND_LEVEL`, is 3: past it the bytes shrink by
//! at most 10% (GRUB at 9) to 18% (GRUB at 19) and not at all on high-entropy images, for
//! 4–100× the CPU; below it (level 1) GRUB's deltas grow by half. The common update path does
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
            base: b.map(|b| old[o.iter().find(|x| x.0 == b).expect("base of old").2.clone()].to_vec()),
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
