//! Ingest benchmark (`cargo xtask bench ingest [--size-mib N] [--dir DIR]`).
//!
//! Writes N MiB (default 1024) of generated firmware-like data to a file, ingests it into a fresh
//! store (timed, including the final fsync), then times plain single-threaded BLAKE3 over the
//! same bytes (mapped, already in the page cache). The last line is the ratio of the two.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use fwrepo_store::{InitOptions, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut size_mib: usize = 1024;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mib" => size_mib = args.next().ok_or("--size-mib needs a value")?.parse()?,
            "--dir" => dir = Some(args.next().ok_or("--dir needs a value")?.into()),
            other => return Err(format!("unknown argument {other:?}; use --size-mib N, --dir DIR").into()),
        }
    }
    let work = match dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let input = work.path().join("input.bin");
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&input)?);
    let mut rng = fwrepo_synth::Rng::new(42);
    let mut left = size_mib << 20;
    while left > 0 {
        let piece = fwrepo_synth::firmware_image(&mut rng, left.min(64 << 20));
        left -= piece.len();
        f.write_all(&piece)?;
    }
    f.into_inner()?.sync_all()?;
    let bytes = (size_mib as u64) << 20;
    println!("input        = {} MiB of generated firmware-like data at {}", size_mib, input.display());

    let data = work.path().join("store");
    Store::init(&data, &InitOptions::default())?;
    let store = Store::open(&data)?;
    let t = Instant::now();
    let report = store.ingest_path(&input)?;
    let ingest_s = t.elapsed().as_secs_f64();
    println!("ingested     = {} chunks, {} new bytes, blob {}", report.chunks, report.new_bytes, report.blob);

    let file = std::fs::File::open(&input)?;
    // SAFETY: the benchmark's own temporary file; nothing modifies it while mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut h = blake3::Hasher::new();
        h.update(&map);
        let id = h.finalize();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(id.as_bytes(), report.blob.as_bytes(), "ingest and plain BLAKE3 disagree on the blob id");
    }
    let ingest_mb_s = bytes as f64 / ingest_s / 1e6;
    let blake3_mb_s = bytes as f64 / best / 1e6;
    println!("ingest_s     = {ingest_s:.3}");
    println!("ingest_mb_s  = {ingest_mb_s:.0}");
    println!("blake3_mb_s  = {blake3_mb_s:.0}");
    println!("ingest/blake3 = {:.2}", ingest_mb_s / blake3_mb_s);
    Ok(())
}
