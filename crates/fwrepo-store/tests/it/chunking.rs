//! Content-defined chunking is stable under edits.

use std::collections::HashSet;

use fwrepo_store::{Chunker, Digest};
use proptest::prelude::*;

use crate::small_params;

fn chunk_ids(c: &Chunker, data: &[u8]) -> Vec<Digest> {
    c.chunks(data).map(|r| Digest::of(&data[r])).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Inserting bytes in the middle changes only the chunks near the edit: every chunk that ends
    /// before the edit is kept, and the chunker falls back into step a few chunks after it.
    #[test]
    fn insertion_changes_only_nearby_chunks(seed in any::<u64>(), at in 0.2f64..0.8, ins in prop::collection::vec(any::<u8>(), 1..3000)) {
        let c = Chunker::new(small_params());
        let a = crate::image(seed, 512 * 1024);
        let pos = (a.len() as f64 * at) as usize;
        let mut b = a.clone();
        b.splice(pos..pos, ins.iter().copied());

        let before: Vec<_> = c.chunks(&a).filter(|r| r.end <= pos).map(|r| Digest::of(&a[r])).collect();
        let b_ids = chunk_ids(&c, &b);
        prop_assert_eq!(&b_ids[..before.len()], &before[..], "chunks before the edit moved");

        // What changed is bounded in size: a few chunks' worth, even where low-entropy data
        // forced cuts at the maximum size.
        let max = small_params().max_size as usize;
        let a_ids: HashSet<Digest> = chunk_ids(&c, &a).into_iter().collect();
        let fresh_bytes: usize = c.chunks(&b).filter(|r| !a_ids.contains(&Digest::of(&b[r.clone()]))).map(|r| r.len()).sum();
        prop_assert!(fresh_bytes <= ins.len() + 4 * max, "{} new bytes for a {}-byte insertion", fresh_bytes, ins.len());
    }
}

#[test]
fn streaming_ingest_cuts_where_in_memory_chunking_does() {
    // The ingest pipeline reads in large buffers; boundaries must not depend on them.
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let data = crate::image(5, 20 << 20);
    let r = store.ingest_reader(&data[..], "mem").unwrap();
    let expect: Vec<(Digest, u32)> =
        store.chunker().chunks(&data).map(|range| (Digest::of(&data[range.clone()]), range.len() as u32)).collect();
    assert_eq!(store.chunk_index(&r.blob).unwrap().chunks, expect);
}
