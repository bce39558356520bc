//! Garbage collection keeps exactly the live blobs and gives space back.

use std::collections::HashSet;

use fwrepo_store::{Error, FsckProblem, GcOptions};

#[test]
fn gc_keeps_roots_removes_the_rest_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let keep_data = crate::image(1, 700_000);
    let drop_data = crate::image(2, 700_000);
    let keep = store.ingest_reader(&keep_data[..], "keep").unwrap().blob;
    let gone = store.ingest_reader(&drop_data[..], "drop").unwrap().blob;
    let before = store.stats().unwrap();

    // A reader holding the old layout keeps working across the compaction.
    let held = store.read_all(&keep).unwrap();
    let report = store.gc(&GcOptions { roots: Some(HashSet::from([keep])), min_dead_fraction: 0.1 }).unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert!(report.chunks_removed > 0);
    assert!(report.bytes_reclaimed > 0);
    assert_eq!(held.concat(), keep_data);

    let after = store.stats().unwrap();
    assert_eq!(after.blobs, 1);
    assert!(after.pack_bytes < before.pack_bytes, "{} !< {}", after.pack_bytes, before.pack_bytes);
    assert_eq!(crate::read_all(&store, &keep), keep_data);
    assert!(matches!(store.read_all(&gone), Err(Error::UnknownBlob { .. })));
    assert!(store.fsck().unwrap().is_clean());
    let on_disk: u64 =
        std::fs::read_dir(dir.path().join("data/packs")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(on_disk, after.pack_bytes);

    // Reopening sees the same; ingesting again works.
    drop(store);
    let store = fwrepo_store::Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(crate::read_all(&store, &keep), keep_data);
    store.ingest_reader(&drop_data[..], "drop").unwrap();
    assert_eq!(crate::read_all(&store, &gone), drop_data);
}

#[test]
fn gc_removes_the_precomputed_deltas_of_the_chunks_it_removes() {
    use fwrepo_chunk::delta::{BasesKey, Encoding};
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let keep = store.ingest_reader(&crate::image(1, 300_000)[..], "keep").unwrap().blob;
    let gone = store.ingest_reader(&crate::image(2, 300_000)[..], "gone").unwrap().blob;
    let (k, g) = (store.chunk_index(&keep).unwrap().chunks[0].0, store.chunk_index(&gone).unwrap().chunks[0].0);
    // Against each other: the record of the kept target stays, that of the removed one goes.
    let (to_keep, to_gone) = (BasesKey::of(&[g]), BasesKey::of(&[k]));
    store.put_deltas(&[(to_keep, k, Encoding::Zstd, vec![1]), (to_gone, g, Encoding::Zstd, vec![2])]).unwrap();
    let report = store.gc(&GcOptions { roots: Some(HashSet::from([keep])), min_dead_fraction: 0.1 }).unwrap();
    assert_eq!(report.deltas_removed, 1, "{report:?}");
    assert!(store.has_precomputed_delta(&to_keep, &k).unwrap());
    assert!(!store.has_precomputed_delta(&to_gone, &g).unwrap());
    // Nothing left to remove the second time.
    assert_eq!(store.gc(&GcOptions::default()).unwrap().deltas_removed, 0);
}

#[test]
fn gc_without_roots_keeps_every_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let a = store.ingest_reader(&crate::image(1, 300_000)[..], "a").unwrap().blob;
    let before = store.stats().unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!((report.blobs_removed, report.chunks_removed), (0, 0));
    assert_eq!(store.stats().unwrap(), before);
    assert_eq!(crate::read_all(&store, &a), crate::image(1, 300_000));
}

#[test]
fn gc_needs_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let _w = crate::new_store(dir.path());
    let ro = fwrepo_store::Store::open_read_only(&dir.path().join("data")).unwrap();
    assert!(matches!(ro.gc(&GcOptions::default()), Err(Error::ReadOnly { .. })));
}

/// Before the fix, `fsck` (a reader with its own view of the index) reported the chunks of a
/// pack `gc` had just moved and unlinked as unreadable, and the weekly timer raised a false
/// corruption alarm.
#[test]
fn fsck_beside_gc_does_not_report_a_pack_gc_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let writer = crate::new_store(dir.path());
    let kept = writer.ingest_reader(&crate::image(31, 300_000)[..], "kept").unwrap().blob;
    let dropped = writer.ingest_reader(&crate::image(32, 300_000)[..], "dropped").unwrap().blob;
    let other = writer.ingest_reader(&crate::image(33, 700_000)[..], "other").unwrap().blob;
    assert!(data.join("packs/00000002.pack").exists());
    // fsck lists the chunks as the index was before gc ...
    let fsck = fwrepo_store::Store::open_read_only(&data).unwrap();
    // ... while gc moves `kept` out of pack 1, drops `dropped`, and unlinks pack 1.
    let report = writer.gc(&GcOptions { roots: Some(HashSet::from([kept, other])), min_dead_fraction: 0.2 }).unwrap();
    assert_eq!((report.blobs_removed, report.packs_rewritten), (1, 1));
    assert!(!data.join("packs/00000001.pack").exists());
    let report = fsck.fsck().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.blobs_checked, 2);
    assert!(matches!(fsck.read_all(&dropped), Err(Error::UnknownBlob { .. })));
}

/// A pack the index still lists but that is gone is corruption, with or without a refresh.
#[test]
fn fsck_still_reports_a_really_missing_pack() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let writer = crate::new_store(dir.path());
    writer.ingest_reader(&crate::image(34, 300_000)[..], "a").unwrap();
    let b = writer.ingest_reader(&crate::image(35, 900_000)[..], "b").unwrap().blob;
    let reader = fwrepo_store::Store::open_read_only(&data).unwrap();
    assert!(reader.fsck().unwrap().is_clean());
    std::fs::remove_file(data.join("packs/00000002.pack")).unwrap();
    let fresh = fwrepo_store::Store::open_read_only(&data).unwrap();
    // The earlier reader still maps pack 2; a refresh makes it look at the files again.
    reader.refresh().unwrap();
    for store in [&fresh, &reader] {
        let report = store.fsck().unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| matches!(p, FsckProblem::UnreadableChunk { pack: 2, blobs, .. } if blobs.contains(&b))),
            "{:?}",
            report.problems
        );
    }
}
