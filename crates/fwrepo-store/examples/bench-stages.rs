//! Single-core throughput of each piece of ingest work (`cargo xtask bench stages`): FastCDC,
//! per-chunk BLAKE3, whole-blob BLAKE3 and SHA-256 over the same in-memory bytes. Their sum,
//! spread over the cores, is the CPU floor `bench ingest` measures itself against.

#[path = "common/mod.rs"]
mod common;

fn main() {
    let data = fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(1), 512 << 20);
    common::measure(&data).0.print();
}
