//! What goes in comes out, byte for byte, with the right ids.

use fwrepo_store::{ChunkIndex, Digest, Store};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

#[test]
fn ingest_reports_ids_and_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    for (seed, len) in [(1u64, 0usize), (2, 1), (3, 2047), (4, 100_000), (5, 3 << 20)] {
        let data = crate::image(seed, len);
        let r = store.ingest_reader(&data[..], "mem").unwrap();
        assert_eq!(r.blob, Digest::of(&data));
        assert_eq!(r.len, len as u64);
        assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(crate::read_all(&store, &r.blob), data);
        let info = store.blob_info(&r.blob).unwrap();
        assert_eq!((info.len, info.sha256, info.chunks), (r.len, r.sha256, r.chunks));
        // The chunk index hashes to the id the store reports and parses back.
        let idx = store.chunk_index(&r.blob).unwrap();
        assert_eq!(idx.id(), info.chunk_index);
        assert_eq!(ChunkIndex::parse(&idx.to_bytes()).unwrap(), idx);
    }
}

#[test]
fn a_blob_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let data = crate::image(9, 1 << 20);
    let blob = {
        let store = crate::new_store(dir.path());
        store.ingest_reader(&data[..], "mem").unwrap().blob
    };
    let store = fwrepo_store::Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(crate::read_all(&store, &blob), data);
    // And a read-only instance sees it too.
    let ro = fwrepo_store::Store::open_read_only(&dir.path().join("data")).unwrap();
    assert_eq!(crate::read_all(&ro, &blob), data);
}

#[test]
fn packs_roll_over_at_their_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let data = crate::image(10, 5 << 20);
    let r = store.ingest_reader(&data[..], "mem").unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.packs >= 5, "5 MiB in 1 MiB packs made {} packs", stats.packs);
    assert_eq!(crate::read_all(&store, &r.blob), data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_range_reads_the_same_bytes(start in 0usize..600_000, len in 0usize..300_000) {
        use std::sync::OnceLock;
        static FIXTURE: OnceLock<(tempfile::TempDir, fwrepo_store::Store, Vec<u8>, Digest)> = OnceLock::new();
        let (_dir, store, data, blob) = FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = crate::new_store(dir.path());
            let data = crate::image(11, 600_000);
            let blob = store.ingest_reader(&data[..], "mem").unwrap().blob;
            (dir, store, data, blob)
        });
        let end = (start + len).min(data.len());
        let got: Vec<u8> = store.read_range(blob, start as u64..end as u64).unwrap().concat();
        prop_assert_eq!(&got[..], &data[start..end]);
    }
}

#[test]
fn ranges_outside_the_blob_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let r = store.ingest_reader(&[7u8; 100][..], "mem").unwrap();
    assert!(matches!(store.read_range(&r.blob, 50..101), Err(fwrepo_store::Error::RangeOutOfBounds { len: 100, .. })));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 60..50;
    assert!(store.read_range(&r.blob, backwards).is_err());
    assert!(store.read_range(&r.blob, 100..100).unwrap().is_empty());
}

/// A file larger than several read buffers and past the point where pack writeback starts
/// (16 MiB into a pack): the profiled path stores the same blob as the plain one, names every
/// stage, and its waits fit inside each stage's wall time.
#[test]
fn profiled_ingest_of_a_file_stores_the_same_blob_and_accounts_for_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fwrepo_store::Store::init(&data_dir, &fwrepo_store::InitOptions::default()).unwrap();
    let data = crate::image(21, 40 << 20);
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let blob = {
        let store = fwrepo_store::Store::open(&data_dir).unwrap();
        let (r, profile) = store.ingest_path_profiled(&input).unwrap();
        assert_eq!(r.blob, Digest::of(&data));
        assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(r.new_bytes, data.len() as u64);
        let names: Vec<&str> = profile.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["read+cut", "sha256", "blake3", "write"]);
        for s in &profile.stages {
            assert!(s.wall >= s.wait_in + s.wait_out + s.io, "{s:?}: waits exceed the stage's wall time");
        }
        assert!(profile.stages.iter().any(|s| !s.cpu.is_zero()), "no stage used any CPU: {profile:?}");
        // The plain path over the same bytes finds every chunk already stored.
        let again = store.ingest_reader(&data[..], "mem").unwrap();
        assert_eq!((again.blob, again.new_bytes), (r.blob, 0));
        r.blob
    };
    let store = fwrepo_store::Store::open(&data_dir).unwrap();
    assert_eq!(crate::read_all(&store, &blob), data);
}

/// The extents of `range` of `blob` (whose bytes are `bytes`), checked: each names the bytes of
/// its slice in its pack file, and together they are the range.
fn checked_extents(store: &Store, blob: &Digest, bytes: &[u8], range: std::ops::Range<u64>) -> fwrepo_store::Extents {
    use std::os::unix::fs::FileExt;
    let extents = store.read_extents(blob, range.clone()).unwrap();
    let mut joined = Vec::new();
    for e in &extents {
        let mut from_file = vec![0u8; e.bytes.len()];
        e.file.read_exact_at(&mut from_file, e.offset).unwrap();
        assert!(from_file[..] == e.bytes[..], "{range:?}: extent at {} differs from its slice", e.offset);
        joined.extend_from_slice(&e.bytes);
    }
    assert!(joined[..] == bytes[range.start as usize..range.end as usize], "{range:?}");
    extents
}

/// Each extent names the bytes of its slice in its pack file, and together they are the range.
/// A blob's new chunks are appended back to back, so they make one extent; chunks it shares
/// with an older blob lie elsewhere and make another.
#[test]
fn extents_name_the_same_bytes_in_the_pack_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let first = crate::image(5, 400_000);
    let first_id = store.ingest_reader(&first[..], "a").unwrap().blob;
    assert_eq!(store.read_extents(&first_id, 0..400_000).unwrap().len(), 1, "a fresh blob is one run");
    // Another blob: new bytes, then the first blob's second half (chunks already stored).
    let bytes = [crate::image(6, 200_000), first[200_000..].to_vec()].concat();
    let blob = store.ingest_reader(&bytes[..], "b").unwrap().blob;
    for range in [0..400_000u64, 1..2, 12_345..300_001, 399_999..400_000, 7..7] {
        checked_extents(&store, &blob, &bytes, range);
    }
    let whole = store.read_extents(&blob, 0..400_000).unwrap();
    assert!((2..=4).contains(&whole.len()), "{} extents", whole.len());
}

/// A read is cut from the blob's runs of packs: one extent per run it touches, each naming its
/// own bytes in its pack file, and the same extents whether the read verified chunks on the way
/// (a fresh reader) or found them all verified already (a reader that read the whole blob).
#[test]
fn extents_are_the_runs_a_range_touches_verified_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (blob, bytes) = {
        let store = crate::new_store(dir.path());
        let first = crate::image(7, 400_000);
        store.ingest_reader(&first[..], "a").unwrap();
        // New bytes, then some of the first blob's (stored elsewhere), then new ones again:
        // several runs in one pack, and chunks shared with the first blob in between.
        let bytes = [crate::image(8, 150_000), first[100_000..250_000].to_vec(), crate::image(9, 150_000)].concat();
        (store.ingest_reader(&bytes[..], "b").unwrap().blob, bytes)
    };
    let len = bytes.len() as u64;
    let mut ranges = vec![0..1, len - 1..len, 5..5];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let start = x % len;
        let end = (start + (x >> 32) % 120_000).min(len);
        ranges.push(start..end);
    }
    // Last, so the fresh reader verifies chunks on the way for the ranges before it.
    ranges.push(0..len);
    let shape = |store: &Store, range: &std::ops::Range<u64>| -> Vec<(u64, usize)> {
        let extents = checked_extents(store, &blob, &bytes, range.clone());
        for pair in extents.windows(2) {
            let contiguous = std::sync::Arc::ptr_eq(&pair[0].file, &pair[1].file)
                && pair[0].offset + pair[0].bytes.len() as u64 == pair[1].offset;
            assert!(!contiguous, "{range:?}: two extents of one run at {} and {}", pair[0].offset, pair[1].offset);
        }
        extents.iter().map(|e| (e.offset, e.bytes.len())).collect()
    };
    let fresh: Vec<_> = {
        let store = Store::open_read_only(&data_dir).unwrap();
        ranges.iter().map(|r| shape(&store, r)).collect()
    };
    let store = Store::open_read_only(&data_dir).unwrap();
    store.read_all(&blob).unwrap();
    for (range, fresh) in ranges.iter().zip(&fresh) {
        assert_eq!(&shape(&store, range), fresh, "{range:?}");
    }
    assert!(fresh.last().unwrap().len() >= 3, "the blob spans several runs: {:?}", fresh.last());
}
