//! Single-core throughput of each piece of ingest work (`cargo xtask bench stages`): FastCDC,
//! per-chunk BLAKE3, whole-blob BLAKE3 and SHA-256 over the same in-memory bytes. Their sum is
//! the CPU floor of ingest, which explains the `ingest/blake3` ratio of `bench ingest`.

use std::hint::black_box;
use std::time::Instant;

use sha2::Digest as _;

fn main() {
    let data = fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(1), 512 << 20);
    let mb = data.len() as f64 / 1e6;
    let chunker = fwrepo_store::Chunker::new(Default::default());
    let mut ns_per_byte = 0.0;
    let mut report = |name: &str, secs: f64| {
        ns_per_byte += secs * 1e9 / data.len() as f64;
        println!("{name:<14} = {:.0} MB/s", mb / secs);
    };
    let t = Instant::now();
    let cuts: Vec<_> = chunker.chunks(&data).collect();
    report("fastcdc_mb_s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    for r in &cuts {
        black_box(blake3::hash(&data[r.clone()]));
    }
    report("chunk_b3_mb_s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    black_box(blake3::hash(&data));
    let blake3_s = t.elapsed().as_secs_f64();
    report("blob_b3_mb_s", blake3_s);
    let t = Instant::now();
    black_box(sha2::Sha256::digest(&data));
    report("sha256_mb_s", t.elapsed().as_secs_f64());
    let floor = 2.0 / ns_per_byte * 1e3;
    println!("cpu work       = {ns_per_byte:.2} ns/byte; on 2 cores at best {floor:.0} MB/s");
    println!("best ratio     = {:.2} (ingest/blake3 with no I/O at all)", floor / (mb / blake3_s));
}
