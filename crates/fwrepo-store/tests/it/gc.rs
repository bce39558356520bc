//! Garbage collection keeps exactly the live blobs and gives space back.

use std::collections::HashSet;

use fwrepo_store::{Error, GcOptions};

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
