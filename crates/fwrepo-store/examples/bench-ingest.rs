//! Ingest benchmark (`cargo xtask bench ingest [--size-mib N] [--dir DIR]...`).
//!
//! In each directory (default: the temp dir, on ext4 here, and `/dev/shm`, a tmpfs) it writes N
//! MiB (default 1024) of generated firmware-like data to a file and measures, in the same run:
//!
//! - ingest into a fresh store, end to end including the final fsync, with where each stage
//!   spent its time (CPU, waiting for input, waiting for room downstream, I/O): the median of
//!   three runs of `Store::ingest_path` (the file read through a mapping under a read lease),
//!   alternating with three through `read()` (the path it falls back to), which are printed
//!   beside it but not compared;
//! - the CPU floor, as `bench stages` computes it, over the same bytes;
//! - the disk write rate: a sequential, fsync'd write of the same size in the same directory,
//!   once through the page cache and once with `O_DIRECT` from an aligned buffer (where the
//!   file system takes it); the faster is the disk's rate;
//! - the peers on the same file: `casync make` and `restic backup --compression off`, each into
//!   a throwaway repository in the same directory (missing tools are an error; `cargo xtask
//!   bench ingest` installs them).
//!
//! It prints ingest ÷ min(floor, disk) (target ≥ 0.9) and ingest ÷ each peer (target ≥ 3); the
//! last line is the worst of all the ratios. These are wall-clock figures. Beside them it
//! prints the CPU time each spent (ingest: the whole process, every thread; peers: the child
//! processes), which a machine shared with other work disturbs much less: the floor's CPU ÷
//! ingest's CPU says how much work ingest does beyond the hashing and cutting it cannot avoid.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use fwrepo_store::{InitOptions, Store};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut size_mib: usize = 1024;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mib" => size_mib = args.next().ok_or("--size-mib needs a value")?.parse()?,
            "--dir" => dirs.push(args.next().ok_or("--dir needs a value")?.into()),
            other => return Err(format!("unknown argument {other:?}; use --size-mib N, --dir DIR").into()),
        }
    }
    if dirs.is_empty() {
        dirs.push(std::env::temp_dir());
        if Path::new("/dev/shm").is_dir() {
            dirs.push("/dev/shm".into());
        }
    }
    for tool in ["casync", "restic"] {
        if Command::new(tool).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(
                format!("{tool} is not installed (apt-get install {tool}, or run `cargo xtask bench ingest`)").into()
            );
        }
    }
    let mut worst = (f64::MAX, String::new());
    for dir in &dirs {
        for (ratio, name) in bench_in(dir, size_mib)? {
            if ratio < worst.0 {
                worst = (ratio, name);
            }
        }
    }
    println!("\nworst ratio = {:.2} ({})", worst.0, worst.1);
    Ok(())
}

/// The file system type of the mount holding `dir` (`ext4`, `tmpfs`, …). Where mounts are
/// stacked on one point `findmnt` lists each; the last is the one on top, which `dir` is on.
fn filesystem(dir: &Path) -> String {
    Command::new("findmnt")
        .args(["-no", "FSTYPE", "-T"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

/// Runs every measurement in `dir`; returns the ratios, each with its name.
fn bench_in(dir: &Path, size_mib: usize) -> Result<Vec<(f64, String)>> {
    let work = tempfile::tempdir_in(dir)?;
    let fs = filesystem(dir);
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
    let mb = bytes as f64 / 1e6;
    println!("\n== {} ({fs}): {size_mib} MiB of generated firmware-like data", dir.display());

    // Ingest first, while nothing else of this run is in the page cache: three runs of
    // `ingest_path` (which reads the file through a mapping when it can hold it with a read
    // lease), each followed by one through `read()` (the path it falls back to), each into a
    // fresh store. The median of each path is the figure; on a memory file system the first
    // run also pays for touching memory the machine had not used yet.
    let data = work.path().join("store");
    let mut runs: Vec<Run> = Vec::new();
    for round in 1..=INGEST_RUNS {
        for through_read in [false, true] {
            let run = ingest_once(&data, &input, through_read)?;
            println!(
                "  ingest run {round} ({}) = {:.0} MB/s ({:.3} s, {:.2} s CPU)",
                if run.profile.mapped { "mapped" } else { "read()" },
                mb / run.secs,
                run.secs,
                run.cpu
            );
            if let Some(first) = runs.first()
                && first.report.info != run.report.info
            {
                return Err("two ingests of the same file disagree".into());
            }
            runs.push(run);
        }
    }
    let median = |mapped: bool| {
        let mut of: Vec<&Run> = runs.iter().filter(|r| r.profile.mapped == mapped).collect();
        of.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        of.get(of.len() / 2).copied()
    };
    let (main, read) = match median(true) {
        Some(m) => (m, median(false)),
        // The file could not be held here: every run read it with read().
        None => (median(false).ok_or("no ingest run")?, None),
    };
    let (report, ingest_s, ingest_cpu) = (&main.report, main.secs, main.cpu);
    let ingest = mb / ingest_s;
    println!(
        "ingest       = {ingest:.0} MB/s ({ingest_s:.3} s, {ingest_cpu:.2} s CPU; median of {INGEST_RUNS}; {} chunks, {} new bytes)",
        report.chunks, report.new_bytes
    );
    print_profile(&main.profile);
    if let Some(read) = read.filter(|_| main.profile.mapped) {
        println!(
            "ingest read()= {:.0} MB/s ({:.3} s, {:.2} s CPU; median of {INGEST_RUNS}; the fallback path, not compared below)",
            mb / read.secs,
            read.secs,
            read.cpu
        );
        print_profile(&read.profile);
    }

    let file = std::fs::File::open(&input)?;
    // SAFETY: the benchmark's own temporary file; nothing modifies it while mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let (floor, blob_id) = common::measure(&map);
    if blob_id != *report.blob.as_bytes() {
        return Err("ingest and plain BLAKE3 disagree on the blob id".into());
    }
    println!("cpu floor    = {:.0} MB/s", floor.mb_s);
    floor.print();

    // The disk, in its best configuration: the same bytes written sequentially in 8 MiB
    // writes and fsync'd, through the page cache and with O_DIRECT.
    let copy = work.path().join("disk-rate.bin");
    let (buffered, buffered_cpu) = disk_write(&copy, &map, false)?;
    println!("disk write   = {buffered:.0} MB/s buffered ({buffered_cpu:.2} s CPU; sequential, fsync'd)");
    let disk = match disk_write(&copy, &map, true) {
        Ok((direct, direct_cpu)) => {
            println!("disk write   = {direct:.0} MB/s O_DIRECT ({direct_cpu:.2} s CPU; sequential, fsync'd)");
            buffered.max(direct)
        }
        Err(e) => {
            println!("disk write   = O_DIRECT not available here ({e})");
            buffered
        }
    };
    println!("disk write   = {disk:.0} MB/s (the faster)");

    let casync = peer(
        "casync make",
        Command::new("casync")
            .arg("make")
            .arg(format!("--store={}", work.path().join("casync.castr").display()))
            .arg(work.path().join("input.caibx"))
            .arg(&input),
    )?;
    let restic_repo = work.path().join("restic");
    let restic_env = |cmd: &mut Command| {
        cmd.env("RESTIC_PASSWORD", "bench").env("RESTIC_CACHE_DIR", work.path().join("restic-cache"));
    };
    let mut init = Command::new("restic");
    init.args(["init", "--repository-version", "2", "--repo"]).arg(&restic_repo);
    restic_env(&mut init);
    run_quiet(&mut init)?;
    let mut backup = Command::new("restic");
    backup.args(["backup", "--compression", "off", "--repo"]).arg(&restic_repo).arg(&input);
    restic_env(&mut backup);
    let restic = peer("restic backup --compression off", &mut backup)?;
    drop(map);

    let bound = floor.mb_s.min(disk);
    let limit = if floor.mb_s <= disk { "CPU floor" } else { "disk" };
    let (casync, casync_cpu) = casync;
    let (restic, restic_cpu) = restic;
    let ratios = vec![
        (ingest / bound, format!("{fs}: ingest ÷ min(floor, disk) [{limit}]")),
        (casync / ingest_s, format!("{fs}: ingest ÷ casync make")),
        (restic / ingest_s, format!("{fs}: ingest ÷ restic backup")),
    ];
    println!(
        "casync make  = {:.0} MB/s ({casync:.2} s, {casync_cpu:.2} s CPU; compresses chunks with zstd, no off switch)",
        mb / casync
    );
    println!("restic       = {:.0} MB/s ({restic:.2} s, {restic_cpu:.2} s CPU)", mb / restic);
    for (r, name) in &ratios {
        println!("{name} = {r:.2}");
    }
    let floor_cpu = floor.cpu_ns_per_byte * bytes as f64 / 1e9;
    println!(
        "{fs}: CPU: floor ÷ ingest = {:.2}; casync ÷ ingest = {:.2}; restic ÷ ingest = {:.2}",
        floor_cpu / ingest_cpu,
        casync_cpu / ingest_cpu,
        restic_cpu / ingest_cpu
    );
    Ok(ratios)
}

/// MB/s and CPU seconds of writing `bytes` to a new file `path` in 8 MiB writes and fsyncing
/// it, with `O_DIRECT` from an aligned buffer or through the page cache. The file is removed.
fn disk_write(path: &Path, bytes: &[u8], direct: bool) -> Result<(f64, f64)> {
    use std::os::unix::fs::OpenOptionsExt;
    const PIECE: usize = 8 << 20;
    const ALIGN: usize = 4096;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    if direct {
        open.custom_flags(libc::O_DIRECT);
    }
    // An aligned buffer to copy each piece into for O_DIRECT (the copy is part of the cost a
    // direct writer pays, as the store's staging does).
    let mut mem = vec![0u8; PIECE + ALIGN];
    let start = (ALIGN - mem.as_ptr() as usize % ALIGN) % ALIGN;
    let staging = &mut mem[start..start + PIECE];
    let (t, cpu0) = (Instant::now(), common::cpu_s(false));
    let mut out = match open.open(path) {
        Ok(f) => f,
        Err(e) => {
            // A refused O_DIRECT open may have created the file already.
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }
    };
    let written = (|| -> std::io::Result<()> {
        for piece in bytes.chunks(PIECE) {
            if direct && piece.len() % ALIGN == 0 {
                staging[..piece.len()].copy_from_slice(piece);
                out.write_all(&staging[..piece.len()])?;
            } else if direct {
                return Err(std::io::Error::other("size is not a multiple of 4096"));
            } else {
                out.write_all(piece)?;
            }
        }
        out.sync_all()
    })();
    let secs = t.elapsed().as_secs_f64();
    let cpu = common::cpu_s(false) - cpu0;
    drop(out);
    std::fs::remove_file(path)?;
    written?;
    Ok((bytes.len() as f64 / 1e6 / secs, cpu))
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}

/// Ingest runs per path (mapped, `read()`).
const INGEST_RUNS: usize = 3;

/// One ingest into a fresh store.
struct Run {
    report: fwrepo_store::IngestReport,
    profile: fwrepo_store::IngestProfile,
    secs: f64,
    cpu: f64,
}

/// Ingests `input` into a fresh store at `data` (removed again after), through
/// `ingest_path` or through `read()`.
fn ingest_once(data: &Path, input: &Path, through_read: bool) -> Result<Run> {
    Store::init(data, &InitOptions::default())?;
    let store = Store::open(data)?;
    let (t, cpu0) = (Instant::now(), common::cpu_s(false));
    let (report, profile) = if through_read {
        store.ingest_reader_profiled(std::fs::File::open(input)?, "input")?
    } else {
        store.ingest_path_profiled(input)?
    };
    let (secs, cpu) = (t.elapsed().as_secs_f64(), common::cpu_s(false) - cpu0);
    drop(store);
    std::fs::remove_dir_all(data)?;
    Ok(Run { report, profile, secs, cpu })
}

fn print_profile(profile: &fwrepo_store::IngestProfile) {
    println!("  {:<10} {:>8} {:>8} {:>9} {:>9} {:>8}   (seconds)", "stage", "cpu", "wall", "wait in", "wait out", "io");
    for s in &profile.stages {
        println!(
            "  {:<10} {:>8.3} {:>8.3} {:>9.3} {:>9.3} {:>8.3}",
            s.name,
            s.cpu.as_secs_f64(),
            s.wall.as_secs_f64(),
            s.wait_in.as_secs_f64(),
            s.wait_out.as_secs_f64(),
            s.io.as_secs_f64()
        );
    }
    println!("  commit (final fsync + index batch) {:.3} s", profile.commit.as_secs_f64());
    println!("  pack writes: {}", if profile.direct_io { "O_DIRECT" } else { "buffered (page cache)" });
    println!("  input read: {}", if profile.mapped { "mapped, under a read lease" } else { "read()" });
}

/// CPU seconds of the waited-for children of this process.
fn children_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall and CPU seconds of one peer's run.
fn peer(name: &str, cmd: &mut Command) -> Result<(f64, f64)> {
    let (t, cpu0) = (Instant::now(), children_cpu_s());
    run_quiet(cmd).map_err(|e| format!("{name}: {e}"))?;
    Ok((t.elapsed().as_secs_f64(), children_cpu_s() - cpu0))
}
