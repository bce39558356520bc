//! Deltas `fwrepo publish` precomputes: from each component's previous version to its new one.
//!
//! The previous version of a component is the component of the same name, anywhere in the
//! catalog, with the highest version below the new one (`fwrepo_version` ordering). Bases are
//! chosen with `fwrepo_chunk::bases::choose_bases`, the rule clients use, so the deltas stored
//! are the ones an update from that version asks for; the server then answers them from
//! `store.deltas` without compressing. Versions that share no chunk are paired too (a
//! compressed image rebuilt from one changed source shares none, yet much of its bytes):
//! with no anchors every seed chunk is a candidate, laid beside the target from either end.
//! Bounded: at most [`MAX_TARGET_BYTES_PER_COMPONENT`] of changed chunks are encoded per
//! component.

use std::collections::HashSet;

use fwrepo_catalog::{Catalog, ComponentName, Version};
use fwrepo_chunk::bases::choose_bases;
use fwrepo_chunk::delta::{self, BasesKey, Encoding};
use fwrepo_store::{ChunkId, Digest, Store, StoredDelta};

use crate::error::Result;

/// Most bytes of changed target chunks encoded for one component.
pub const MAX_TARGET_BYTES_PER_COMPONENT: u64 = 1 << 30;

/// For each `(name, version)`, the blob of the previous version: the component of that name
/// with the highest version below `version` anywhere in the catalog. One pass over the catalog.
pub(crate) fn previous_versions(
    catalog: &Catalog,
    wanted: &[(&ComponentName, &Version)],
) -> Result<Vec<Option<Digest>>> {
    let mut best: Vec<Option<(Version, Digest)>> = vec![None; wanted.len()];
    for id in catalog.release_ids()? {
        let Some(release) = catalog.release(&id)? else { continue };
        for c in &release.components {
            for ((name, version), slot) in wanted.iter().zip(best.iter_mut()) {
                if &c.name == *name && &c.version < *version && slot.as_ref().is_none_or(|(v, _)| c.version > *v) {
                    *slot = Some((c.version.clone(), c.blob));
                }
            }
        }
    }
    Ok(best.into_iter().map(|b| b.map(|(_, d)| d)).collect())
}

/// Encodes and stores the deltas of `target` against `seed`, the blob of its previous
/// version, at `level`; returns how many it stored (pairs already stored are skipped).
pub(crate) fn precompute(store: &Store, seed: &Digest, target: &Digest, level: i32) -> Result<usize> {
    if seed == target {
        return Ok(0);
    }
    let target_chunks = store.chunk_index(target)?.chunks;
    let seed_chunks = store.chunk_index(seed)?.chunks;
    let bases = choose_bases(&target_chunks, &seed_chunks);
    let mut pairs: Vec<(Vec<ChunkId>, BasesKey, ChunkId)> = Vec::new();
    let mut seen: HashSet<(BasesKey, ChunkId)> = HashSet::new();
    let mut bytes = 0u64;
    for ((t, len), bases) in target_chunks.iter().zip(bases) {
        if bases.is_empty() {
            continue;
        }
        let key = BasesKey::of(&bases);
        if !seen.insert((key, *t)) || store.has_precomputed_delta(&key, t)? {
            continue;
        }
        bytes += u64::from(*len);
        if bytes > MAX_TARGET_BYTES_PER_COMPONENT {
            break;
        }
        pairs.push((bases, key, *t));
    }
    if pairs.is_empty() {
        return Ok(0);
    }
    // Spread over the cores: each thread encodes every n-th pair.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(pairs.len());
    let results: Vec<Result<Vec<StoredDelta>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let pairs = &pairs;
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut prefix = Vec::new();
                    for (bases, key, t) in pairs.iter().skip(k).step_by(threads) {
                        let Some(tb) = store.read_chunk(t)? else { continue };
                        if !store.read_bases(bases, &mut prefix)? {
                            continue;
                        }
                        let (enc, payload) = delta::encode(&tb, Some(&prefix), level)
                            .map_err(|e| crate::Error::Invalid(format!("delta of chunk {t}: {e}")))?;
                        // A raw frame saves nothing over a range: not worth a record.
                        if enc != Encoding::Raw {
                            out.push((*key, *t, enc, payload));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("delta thread panicked")).collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    store.put_deltas(&all)?;
    Ok(all.len())
}
