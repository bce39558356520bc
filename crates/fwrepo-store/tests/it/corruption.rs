//! A flipped byte in a pack is named by fsck and never served.

use std::os::unix::fs::FileExt;

use fwrepo_store::{Error, FsckProblem, Store};

/// A store under `dir` holding one blob of `crate::image(seed, len)`, closed again: its data
/// dir and the blob's report.
fn one_blob(dir: &std::path::Path, seed: u64, len: usize) -> (std::path::PathBuf, fwrepo_store::IngestReport) {
    let store = crate::new_store(dir);
    let a = store.ingest_reader(&crate::image(seed, len)[..], "a").unwrap();
    (dir.join("data"), a)
}

/// Flips the bits of `mask` in the byte at `at` of the file at `path`.
fn flip(path: &std::path::Path, at: u64, mask: u8) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ mask], at).unwrap();
}

#[test]
fn flipped_pack_byte_is_reported_by_chunk_and_blob_and_reads_fail() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (a, b) = {
        let store = crate::new_store(dir.path());
        let a = store.ingest_reader(&crate::image(1, 300_000)[..], "a").unwrap();
        let b = store.ingest_reader(&crate::image(2, 300_000)[..], "b").unwrap();
        assert!(store.fsck().unwrap().is_clean());
        (a, b)
    };
    // Flip a byte in the middle of the first pack: it holds blob a's chunks.
    let pack = data_dir.join("packs/00000001.pack");
    flip(&pack, 100_000, 0x40);

    let store = Store::open(&data_dir).unwrap();
    let report = store.fsck().unwrap();
    assert!(!report.is_clean());
    let corrupt: Vec<_> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            FsckProblem::CorruptChunk { chunk, blobs, .. } => Some((*chunk, blobs.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(corrupt.len(), 1, "{:?}", report.problems);
    assert_eq!(corrupt[0].1, vec![a.blob]);
    let index = store.chunk_index(&a.blob).unwrap();
    assert!(index.chunks.iter().any(|(c, _)| *c == corrupt[0].0));

    match store.read_all(&a.blob) {
        Err(Error::CorruptChunk { chunk, .. }) => assert_eq!(chunk, corrupt[0].0),
        other => panic!("read of a corrupt blob gave {:?}", other.map(|v| v.len())),
    }
    // The other blob is untouched and still reads.
    assert_eq!(crate::read_all(&store, &b.blob), crate::image(2, 300_000));
}

#[test]
fn a_truncated_pack_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, a) = one_blob(dir.path(), 3, 200_000);
    let pack = data_dir.join("packs/00000001.pack");
    let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    f.set_len(50_000).unwrap();
    drop(f);
    let store = Store::open_read_only(&data_dir).unwrap();
    let report = store.fsck().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, FsckProblem::UnreadableChunk { blobs, .. } if blobs == &vec![a.blob]))
    );
    assert!(store.read_all(&a.blob).is_err());
}

/// The extents a server sends with `sendfile` pass the same first-use check as the mapped
/// slices: a flipped byte makes `read_extents` fail, never hand out the file range.
#[test]
fn a_flipped_byte_is_never_handed_out_as_an_extent() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, a) = one_blob(dir.path(), 4, 300_000);
    let pack = data_dir.join("packs/00000001.pack");
    flip(&pack, 150_000, 0x01);
    let store = Store::open(&data_dir).unwrap();
    // A range well before the flipped byte still reads; one over it does not.
    assert!(!store.read_extents(&a.blob, 0..1000).unwrap().is_empty());
    match store.read_extents(&a.blob, 140_000..160_000) {
        Err(Error::CorruptChunk { .. }) => {}
        other => panic!("extents over a corrupt chunk: {:?}", other.map(|v| v.len())),
    }
    // Nor does a run of good chunks that goes on over it: a run is as checked as its chunks.
    assert!(matches!(store.read_extents(&a.blob, 0..300_000), Err(Error::CorruptChunk { .. })));
    assert!(matches!(store.read_extents(&a.blob, 140_000..300_000), Err(Error::CorruptChunk { .. })));
}

/// Reads stop verifying only once every chunk of the blob has been verified: a blob read in
/// part, whose unread chunk then goes bad, is still refused over that chunk, and the check
/// holds however much of the rest has been read.
#[test]
fn a_chunk_not_yet_read_is_still_checked_after_the_rest_was() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, a) = one_blob(dir.path(), 10, 300_000);
    let store = Store::open_read_only(&data_dir).unwrap();
    let index = store.chunk_index(&a.blob).unwrap();
    assert!(index.chunks.len() >= 3, "{} chunks", index.chunks.len());
    let last_len = u64::from(index.chunks.last().unwrap().1);
    let last_start = 300_000 - last_len;
    // Everything but the last chunk, read and so verified; then a byte of the last one flips
    // in the pack the reader has mapped.
    assert!(!store.read_extents(&a.blob, 0..last_start).unwrap().is_empty());
    let pack = data_dir.join("packs/00000001.pack");
    flip(&pack, 8 + last_start + last_len / 2, 0x10);
    for range in [last_start..300_000, 299_999..300_000, 0..300_000, last_start - 1..last_start + 1] {
        match store.read_extents(&a.blob, range.clone()) {
            Err(Error::CorruptChunk { .. }) => {}
            other => panic!("{range:?} over the bad chunk: {:?}", other.map(|v| v.len())),
        }
    }
    // The chunks verified before still read.
    assert_eq!(
        store.read_range(&a.blob, 0..last_start).unwrap().concat(),
        crate::image(10, 300_000)[..last_start as usize]
    );
}
