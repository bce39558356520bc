//! Laws of range coalescing, on random chunk lists, needs and cost models.

use std::time::Duration;

use fwrepo_chunk::{ChunkIndex, Digest};
use fwrepo_fetch::CostModel;
use fwrepo_fetch::plan::{coalesce, runs};
use proptest::prelude::*;

fn index(lens: &[u32]) -> ChunkIndex {
    let chunks: Vec<_> = lens.iter().enumerate().map(|(i, &l)| (Digest::of(&(i as u64).to_le_bytes()), l)).collect();
    ChunkIndex { blob_len: lens.iter().map(|&l| u64::from(l)).sum(), chunks }
}

proptest! {
    #[test]
    fn coalescing_covers_every_needed_chunk_once_and_never_adds_requests(
        chunks in prop::collection::vec((1u32..100_000, any::<bool>()), 0..200),
        rtt_ms in 0u64..200,
        mbit in 1u64..10_000,
        max_gap in 0u64..1_000_000,
    ) {
        let lens: Vec<u32> = chunks.iter().map(|c| c.0).collect();
        let needed: Vec<bool> = chunks.iter().map(|c| c.1).collect();
        let idx = index(&lens);
        let model = CostModel { rtt: Duration::from_millis(rtt_ms), bytes_per_sec: mbit as f64 * 125_000.0, max_gap };
        let ranges = coalesce(&idx, &needed, &model);
        prop_assert!(ranges.len() <= runs(&needed));
        let offsets: Vec<u64> = idx.offsets().map(|(o, _)| o).collect();
        let end_of = |i: usize| offsets[i] + u64::from(lens[i]);
        let mut covered = vec![0u32; lens.len()];
        for (k, r) in ranges.iter().enumerate() {
            // On chunk boundaries, within the blob, starting and ending on a needed chunk.
            prop_assert!(r.start < r.end && r.end <= idx.blob_len);
            prop_assert_eq!(r.start, offsets[r.chunks.start]);
            prop_assert_eq!(r.end, end_of(r.chunks.end - 1));
            prop_assert!(needed[r.chunks.start] && needed[r.chunks.end - 1]);
            for i in r.chunks.clone() {
                covered[i] += 1;
            }
            if k > 0 {
                // Disjoint, in order, and separated by a gap not worth filling.
                let gap = r.start - ranges[k - 1].end;
                prop_assert!(gap > 0 && gap >= model.gap_threshold());
            }
            // Every gap filled inside a range was cheaper than a request.
            let mut i = r.chunks.start;
            while i < r.chunks.end {
                if !needed[i] {
                    let j = (i..r.chunks.end).find(|&j| needed[j]).unwrap();
                    prop_assert!(offsets[j] - offsets[i] < model.gap_threshold());
                    i = j;
                } else {
                    i += 1;
                }
            }
        }
        for (i, &n) in needed.iter().enumerate() {
            if n {
                prop_assert_eq!(covered[i], 1, "needed chunk {} fetched {} times", i, covered[i]);
            }
            prop_assert!(covered[i] <= 1);
        }
        // Without gap filling, exactly one range per run.
        let none = CostModel { max_gap: 0, ..model };
        prop_assert_eq!(coalesce(&idx, &needed, &none).len(), runs(&needed));
    }
}
