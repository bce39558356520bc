//! Integration tests of the store: one binary, a module per concern.

mod chunking;
mod concurrency;
mod corruption;
mod dedup;
mod errors;
mod gc;
mod import;
mod packs;
mod roundtrip;

use std::path::Path;

use fwrepo_store::{ChunkerParams, InitOptions, Store};

/// Small chunks, so tests exercise many chunks with little data.
pub fn small_params() -> ChunkerParams {
    ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 }
}

/// A fresh writer store in `dir` with small chunks.
pub fn new_store(dir: &Path) -> Store {
    let data = dir.join("data");
    Store::init(&data, &InitOptions { chunk_sizes: small_params(), pack_max_size: 1 << 20 }).unwrap();
    Store::open(&data).unwrap()
}

/// Reads a whole blob into one buffer.
pub fn read_all(store: &Store, blob: &fwrepo_store::Digest) -> Vec<u8> {
    store.read_all(blob).unwrap().concat()
}

pub fn image(seed: u64, len: usize) -> Vec<u8> {
    fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(seed), len)
}
