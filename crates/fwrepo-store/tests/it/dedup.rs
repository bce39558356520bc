//! Identical chunks are stored once, across blobs and releases.

use fwrepo_synth::{Series, SeriesParams};

#[test]
fn ingesting_a_release_twice_stores_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let release = Series::new(SeriesParams::small()).next().unwrap();
    let total: u64 = release.components.iter().map(|c| c.data.len() as u64).sum();
    let mut first_new = 0;
    for c in &release.components {
        first_new += store.ingest_reader(&c.data[..], &c.file).unwrap().new_bytes;
    }
    let after_first = store.stats().unwrap();
    assert!(first_new <= total && first_new > total / 2, "first ingest stored {first_new} of {total}");
    for c in &release.components {
        let r = store.ingest_reader(&c.data[..], &c.file).unwrap();
        assert_eq!((r.new_bytes, r.new_chunks), (0, 0), "{} stored again", c.file);
    }
    let after_second = store.stats().unwrap();
    assert_eq!(after_second.chunk_bytes, after_first.chunk_bytes);
    assert_eq!(after_second.pack_bytes, after_first.pack_bytes);
    assert_eq!(after_second.chunks, after_first.chunks);
}

#[test]
fn a_following_release_stores_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let releases: Vec<_> = Series::new(SeriesParams::small()).take(2).collect();
    for c in &releases[0].components {
        store.ingest_reader(&c.data[..], &c.file).unwrap();
    }
    let mut new = 0u64;
    let mut total = 0u64;
    for (c, prev) in releases[1].components.iter().zip(&releases[0].components) {
        let r = store.ingest_reader(&c.data[..], &c.file).unwrap();
        if c.data == prev.data {
            assert_eq!(r.new_bytes, 0, "unchanged {} stored bytes", c.file);
        }
        new += r.new_bytes;
        total += c.data.len() as u64;
    }
    // Patches, insertions, shifts and recompressed sections touch a minority of each file.
    assert!(new * 3 < total, "second release stored {new} of {total} bytes");
    let stats = store.stats().unwrap();
    assert_eq!(stats.blobs, 2 * releases[0].components.len() as u64 - unchanged(&releases) as u64);
    assert!(stats.logical_bytes > stats.chunk_bytes);
}

fn unchanged(r: &[fwrepo_synth::Release]) -> usize {
    r[1].components.iter().zip(&r[0].components).filter(|(a, b)| a.data == b.data).count()
}

#[test]
fn repeated_chunks_within_one_blob_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let part = crate::image(3, 200_000);
    let data = [part.clone(), part.clone(), part].concat();
    let r = store.ingest_reader(&data[..], "mem").unwrap();
    assert!(r.new_bytes < 2 * 200_000, "stored {} bytes for three copies", r.new_bytes);
    assert_eq!(crate::read_all(&store, &r.blob), data);
}
