//! Store commands: init, ingest, cat, fsck, gc, stats.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use fwrepo_store::{ChunkerParams, Digest, GcOptions, InitOptions, Store};

use crate::{Data, Outcome};

#[derive(clap::Args)]
pub struct DataArgs {
    #[command(flatten)]
    data: Data,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub(crate) data: Data,
    /// Smallest chunk, in bytes (fixed for the life of the store).
    #[arg(long, default_value_t = ChunkerParams::default().min_size)]
    chunk_min: u32,
    /// Average chunk, in bytes (fixed for the life of the store).
    #[arg(long, default_value_t = ChunkerParams::default().avg_size)]
    chunk_avg: u32,
    /// Largest chunk, in bytes (fixed for the life of the store).
    #[arg(long, default_value_t = ChunkerParams::default().max_size)]
    chunk_max: u32,
    /// Size at which a pack file is closed and a new one started.
    #[arg(long, default_value_t = InitOptions::default().pack_max_size)]
    pack_max_size: u64,
}

#[derive(clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    data: Data,
    /// Print one JSON object per file instead of a line of text.
    #[arg(long)]
    json: bool,
    /// Files to store.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct CatArgs {
    #[command(flatten)]
    data: Data,
    /// The blob id (64 hex digits).
    blob: String,
    /// Bytes START-END, both inclusive as in HTTP ranges; `START-` runs to the end.
    #[arg(long, value_name = "START-END")]
    range: Option<String>,
}

#[derive(clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    data: Data,
    /// A file of blob ids to keep, one per line; every other blob is removed. Without it every
    /// blob is kept and only chunks no blob uses are collected.
    #[arg(long, value_name = "FILE")]
    roots: Option<PathBuf>,
    /// Rewrite a pack once this share of it is dead (0 to 1).
    #[arg(long, default_value_t = GcOptions::default().min_dead_fraction)]
    min_dead_fraction: f64,
    #[arg(long)]
    json: bool,
}

pub fn init(a: InitArgs) -> Result<Outcome> {
    let opts = InitOptions {
        chunk_sizes: ChunkerParams { min_size: a.chunk_min, avg_size: a.chunk_avg, max_size: a.chunk_max },
        pack_max_size: a.pack_max_size,
    };
    Store::init(&a.data.data, &opts)?;
    println!("initialized {}", a.data.data.display());
    Ok(Outcome::Ok)
}

pub fn ingest(a: IngestArgs) -> Result<Outcome> {
    // Check every file before storing any, so a typo changes nothing.
    for f in &a.files {
        let meta = std::fs::metadata(f).with_context(|| format!("{}", f.display()))?;
        if !meta.is_file() {
            bail!("{}: not a regular file", f.display());
        }
    }
    let store = Store::open(&a.data.data)?;
    let mut out = std::io::stdout().lock();
    for f in &a.files {
        let r = store.ingest_path(f)?;
        if a.json {
            let mut v = serde_json::to_value(&r)?;
            v["file"] = f.display().to_string().into();
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{}  {} bytes  {} chunks  {} new bytes  {}",
                r.blob,
                r.len,
                r.chunks,
                r.new_bytes,
                f.display()
            )?;
        }
        out.flush()?;
    }
    Ok(Outcome::Ok)
}

/// Parses `START-END` (inclusive) or `START-` into a half-open range within `len`.
fn parse_range(spec: &str, len: u64) -> Result<std::ops::Range<u64>> {
    let bad = || anyhow::anyhow!("bad range {spec:?}: expected START-END or START- with START <= END");
    let (s, e) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = s.parse().map_err(|_| bad())?;
    let end: u64 =
        if e.is_empty() { len } else { e.parse::<u64>().map_err(|_| bad())?.checked_add(1).ok_or_else(bad)? };
    if start >= end && !(start == end && e.is_empty()) {
        return Err(bad());
    }
    if end > len {
        bail!("range {spec} is past the end of the blob ({len} bytes)");
    }
    Ok(start..end)
}

pub fn cat(a: CatArgs) -> Result<Outcome> {
    let blob: Digest = a.blob.parse()?;
    let store = Store::open_read_only(&a.data.data)?;
    let len = store.blob_info(&blob)?.len;
    let range = match &a.range {
        Some(spec) => parse_range(spec, len)?,
        None => 0..len,
    };
    let mut out = std::io::stdout().lock();
    // Read a few MiB at a time: a corrupt chunk stops the output there with an error.
    const STEP: u64 = 4 << 20;
    let mut pos = range.start;
    while pos < range.end {
        let end = (pos + STEP).min(range.end);
        for slice in store.read_range(&blob, pos..end)? {
            out.write_all(&slice)?;
        }
        pos = end;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

pub fn fsck(a: DataArgs) -> Result<Outcome> {
    let store = Store::open_read_only(&a.data.data)?;
    let report = store.fsck()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        println!(
            "checked {} chunks ({} bytes) and {} blobs: {}",
            report.chunks_checked,
            report.chunk_bytes_checked,
            report.blobs_checked,
            if report.is_clean() { "clean".to_owned() } else { format!("{} problems", report.problems.len()) }
        );
    }
    Ok(if report.is_clean() { Outcome::Ok } else { Outcome::Problems })
}

pub fn gc(a: GcArgs) -> Result<Outcome> {
    if !(0.0..=1.0).contains(&a.min_dead_fraction) {
        bail!("--min-dead-fraction must be between 0 and 1, got {}", a.min_dead_fraction);
    }
    let roots = match &a.roots {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            let mut set = HashSet::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                set.insert(line.parse::<Digest>().with_context(|| format!("{}:{}", path.display(), n + 1))?);
            }
            Some(set)
        }
    };
    // With signed metadata and no --roots, the live blobs are those current targets name:
    // blobs left by a failed publish (or a bare `ingest`) are collected.
    let repo = fwrepo_repo::Repo::open(&a.data.data)?;
    let roots = match roots {
        None if repo.has_metadata()? => Some(repo.live_blobs()?),
        r => r,
    };
    let report = repo.store().gc(&GcOptions { roots, min_dead_fraction: a.min_dead_fraction })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "removed {} blobs, {} chunks and {} precomputed deltas; rewrote {} packs, removed {} packs; reclaimed {} bytes ({} dead bytes left below the threshold)",
            report.blobs_removed,
            report.chunks_removed,
            report.deltas_removed,
            report.packs_rewritten,
            report.packs_removed,
            report.bytes_reclaimed,
            report.dead_bytes_left
        );
    }
    Ok(Outcome::Ok)
}

pub fn stats(a: DataArgs) -> Result<Outcome> {
    let store = Store::open_read_only(&a.data.data)?;
    let s = store.stats()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let ratio = if s.chunk_bytes == 0 { 1.0 } else { s.logical_bytes as f64 / s.chunk_bytes as f64 };
        println!("blobs          {}", s.blobs);
        println!("logical bytes  {}", s.logical_bytes);
        println!("chunks         {}", s.chunks);
        println!("chunk bytes    {}", s.chunk_bytes);
        println!("dedup ratio    {ratio:.2}");
        println!("packs          {}", s.packs);
        println!("pack bytes     {}", s.pack_bytes);
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_inclusive_and_checked() {
        assert_eq!(parse_range("0-9", 100).unwrap(), 0..10);
        assert_eq!(parse_range("90-", 100).unwrap(), 90..100);
        assert_eq!(parse_range("100-", 100).unwrap(), 100..100);
        for bad in ["", "5", "9-0", "-5", "a-b", "0-100", "18446744073709551615-18446744073709551615"] {
            assert!(parse_range(bad, 100).is_err(), "{bad}");
        }
    }
}
