//! The seed index: an unchanged seed is not chunked again; a changed one is.

use fwget::seeds::Seeds;
use fwrepo_chunk::Digest;

use crate::support::*;

#[test]
fn unchanged_seeds_come_from_the_index_and_changed_ones_are_rescanned() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("seeds.json");
    let dir = tmp.path().join("seeds");
    std::fs::create_dir(&dir).unwrap();
    let (a, b) = (data(1, 100_000), data(2, 60_000));
    std::fs::write(dir.join("a.bin"), &a).unwrap();
    std::fs::write(dir.join("b.bin"), &b).unwrap();
    // fwget's own working files are never seeds.
    std::fs::write(dir.join(".fwget-x.part"), data(3, 10_000)).unwrap();

    let s = Seeds::scan(&index, std::slice::from_ref(&dir), params()).unwrap();
    assert_eq!((s.stats.files, s.stats.rescanned), (2, 2));
    let first = index_of(&a).chunks[0].0;
    assert_eq!(s.sources(&first).len(), 1);
    s.save().unwrap();

    let s = Seeds::scan(&index, std::slice::from_ref(&dir), params()).unwrap();
    assert_eq!((s.stats.files, s.stats.rescanned, s.stats.bytes_scanned), (2, 0, 0));
    assert_eq!(s.sources(&first).len(), 1, "chunks come from the saved index");
    s.save().unwrap();

    let b2 = edited(&data(2, 300_000));
    std::fs::write(dir.join("b.bin"), &b2).unwrap();
    let s = Seeds::scan(&index, std::slice::from_ref(&dir), params()).unwrap();
    assert_eq!(s.stats.rescanned, 1);
    assert_eq!(s.stats.bytes_scanned, b2.len() as u64);
    let new_first = Digest::of(&b2[..index_of(&b2).chunks[0].1 as usize]);
    assert_eq!(s.sources(&new_first).len(), 1);

    // Other chunker sizes (a repository re-initialized) rescan everything.
    let other = fwrepo_chunk::ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536 };
    let s = Seeds::scan(&index, std::slice::from_ref(&dir), other).unwrap();
    assert_eq!(s.stats.rescanned, 2);
}
