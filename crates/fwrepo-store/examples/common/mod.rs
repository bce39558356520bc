//! The CPU floor of ingest, shared by `bench-stages` and `bench-ingest` so both compute it the
//! same way: single-core throughput of each piece of work ingest must do (FastCDC, per-chunk
//! BLAKE3, whole-blob BLAKE3, SHA-256) over the same bytes, summed per byte and spread
//! perfectly over the cores.
//!
//! Each stage is timed by the wall clock (the floor as first defined) and by the thread's CPU
//! time: on a machine shared with other work the wall-clock floor sinks with the load, the CPU
//! one does not.

use std::hint::black_box;
use std::time::Instant;

use sha2::Digest as _;

/// Throughput of each stage and the floor they add up to.
pub struct Floor {
    /// (name, MB/s on one core by the wall clock, by CPU time).
    pub stages: Vec<(&'static str, f64, f64)>,
    /// Wall-clock nanoseconds per byte, all stages.
    pub ns_per_byte: f64,
    /// CPU nanoseconds per byte, all stages.
    pub cpu_ns_per_byte: f64,
    pub cores: usize,
    /// `cores / ns_per_byte`: the fastest ingest could go with no I/O at all.
    pub mb_s: f64,
    /// The same from CPU time: what the floor would be on a quiet machine.
    pub cpu_mb_s: f64,
}

/// CPU time of the calling thread (`thread`) or of the whole process, in seconds.
pub fn cpu_s(thread: bool) -> f64 {
    let clock = if thread { libc::CLOCK_THREAD_CPUTIME_ID } else { libc::CLOCK_PROCESS_CPUTIME_ID };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids are constants the kernel knows.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Wall and CPU seconds of `f` on this thread.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t, c) = (Instant::now(), cpu_s(true));
    let out = f();
    (out, t.elapsed().as_secs_f64(), cpu_s(true) - c)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures every stage over `data` (in memory or page-cache hot). Also returns the
/// whole-blob BLAKE3, to check an ingest's blob id against.
pub fn measure(data: &[u8]) -> (Floor, [u8; 32]) {
    let mb = data.len() as f64 / 1e6;
    let chunker = fwrepo_store::Chunker::new(Default::default());
    let mut stages = Vec::new();
    let mut stage = |name, wall: f64, cpu: f64| stages.push((name, mb / wall, mb / cpu));
    let (cuts, wall, cpu) = timed(|| chunker.chunks(data).collect::<Vec<_>>());
    stage("fastcdc", wall, cpu);
    let ((), wall, cpu) = timed(|| {
        for r in &cuts {
            black_box(blake3::hash(&data[r.clone()]));
        }
    });
    stage("chunk_b3", wall, cpu);
    let (blob_id, wall, cpu) = timed(|| *blake3::hash(data).as_bytes());
    stage("blob_b3", wall, cpu);
    let (_, wall, cpu) = timed(|| black_box(sha2::Sha256::digest(data)));
    stage("sha256", wall, cpu);
    let ns_per_byte: f64 = stages.iter().map(|(_, wall, _)| 1e3 / wall).sum();
    let cpu_ns_per_byte: f64 = stages.iter().map(|(_, _, cpu)| 1e3 / cpu).sum();
    let cores = cores();
    let floor = Floor {
        stages,
        ns_per_byte,
        cpu_ns_per_byte,
        cores,
        mb_s: cores as f64 / ns_per_byte * 1e3,
        cpu_mb_s: cores as f64 / cpu_ns_per_byte * 1e3,
    };
    (floor, blob_id)
}

impl Floor {
    pub fn print(&self) {
        for (name, wall, cpu) in &self.stages {
            println!("  {:<12} = {wall:.0} MB/s on one core ({cpu:.0} MB/s of CPU time)", format!("{name}_mb_s"));
        }
        println!(
            "  cpu work     = {:.2} ns/byte; on {} cores at best {:.0} MB/s (the CPU floor)",
            self.ns_per_byte, self.cores, self.mb_s
        );
        println!(
            "  by CPU time  = {:.2} ns/byte; on {} cores at best {:.0} MB/s (the floor on a quiet machine)",
            self.cpu_ns_per_byte, self.cores, self.cpu_mb_s
        );
    }
}
