//! Pack ids and maps across garbage collection: an id is never given to a second pack, and a
//! reader lets go of packs the index no longer lists.

use std::collections::HashSet;
use std::path::Path;

use fwrepo_store::{GcOptions, Store};

fn pack_file(data: &Path, id: u32) -> std::path::PathBuf {
    data.join("packs").join(format!("{id:08}.pack"))
}

/// Lines of this process's memory maps that map `path`.
fn maps_of(path: &Path) -> Vec<String> {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&path))
        .map(str::to_owned)
        .collect()
}

fn collect_everything() -> GcOptions {
    GcOptions { roots: Some(HashSet::new()), min_dead_fraction: 0.2 }
}

/// Before the fix, a writer opened after `gc` had removed the newest pack numbered the next pack
/// after the newest one left, so a new `00000001.pack` appeared while a server still mapped the
/// old one and answered the new blob with "corrupt chunk".
#[test]
fn pack_id_not_reused_after_gc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = crate::image(11, 300_000);
    let reader = {
        let writer = crate::new_store(dir.path());
        let a = writer.ingest_reader(&old[..], "a").unwrap().blob;
        let reader = Store::open_read_only(&data).unwrap();
        // The reader maps pack 1 (as a server does when it serves `a`).
        assert_eq!(crate::read_all(&reader, &a), old);
        let report = writer.gc(&collect_everything()).unwrap();
        assert_eq!(report.packs_removed, 1);
        assert!(!pack_file(&data, 1).exists());
        reader
    };
    // The next publish runs as a new writer process.
    let writer = Store::open(&data).unwrap();
    let new = crate::image(12, 300_000);
    let b = writer.ingest_reader(&new[..], "b").unwrap().blob;
    assert!(!pack_file(&data, 1).exists(), "pack id 1 was given to a new pack");
    assert!(pack_file(&data, 2).exists());
    reader.refresh().unwrap();
    assert_eq!(crate::read_all(&reader, &b), new);
    // And across another open, with nothing written in between.
    drop(writer);
    let writer = Store::open(&data).unwrap();
    writer.gc(&collect_everything()).unwrap();
    drop(writer);
    let writer = Store::open(&data).unwrap();
    writer.ingest_reader(&old[..], "a").unwrap();
    assert!(pack_file(&data, 3).exists() && !pack_file(&data, 2).exists());
}

/// A data dir written before pack ids had a high-water mark gets one derived from what is
/// there, including a pack file the index no longer knows (a collected pack a reader may map).
#[test]
fn an_old_data_dir_without_a_pack_mark_never_reuses_a_present_pack_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let writer = crate::new_store(dir.path());
        writer.ingest_reader(&crate::image(13, 200_000)[..], "a").unwrap();
        let db = writer.db();
        db.rocks().delete_cf(db.require_cf("store.meta").unwrap(), b"next_pack").unwrap();
    }
    // Left behind by a gc that stopped before unlinking it.
    let mut stray = b"FWPACK\0\x01".to_vec();
    stray.resize(100, 0);
    std::fs::write(pack_file(&data, 5), stray).unwrap();
    let writer = Store::open(&data).unwrap();
    assert!(!pack_file(&data, 5).exists(), "the writer removes packs the index does not know");
    // Pack 1 has room, so fill it to make the store start a new pack.
    for seed in 14..20 {
        writer.ingest_reader(&crate::image(seed, 300_000)[..], "fill").unwrap();
    }
    assert!(pack_file(&data, 6).exists(), "the first new pack must come after every id seen");
    for id in 2..=5 {
        assert!(!pack_file(&data, id).exists(), "pack {id}");
    }
}

/// Before the fix a reader kept its map of every pack it had ever read, so a pack `gc` unlinked
/// stayed on disk, `(deleted)` in the reader's maps, until the reader exited.
#[test]
fn reader_drops_mappings_of_removed_packs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let writer = crate::new_store(dir.path());
    let gone = writer.ingest_reader(&crate::image(21, 300_000)[..], "gone").unwrap().blob;
    let reader = Store::open_read_only(&data).unwrap();
    crate::read_all(&reader, &gone);
    let pack = std::fs::canonicalize(pack_file(&data, 1)).unwrap();
    assert_eq!(maps_of(&pack).len(), 1, "the reader maps pack 1");

    writer.gc(&collect_everything()).unwrap();
    assert!(maps_of(&pack).iter().all(|l| l.ends_with("(deleted)")));
    reader.refresh().unwrap();
    assert_eq!(maps_of(&pack), Vec::<String>::new(), "the reader still maps the removed pack");

    // Slices handed out before the refresh keep the bytes valid until they are dropped.
    let kept = writer.ingest_reader(&crate::image(22, 300_000)[..], "kept").unwrap().blob;
    reader.refresh().unwrap();
    let held = reader.read_all(&kept).unwrap();
    let pack2 = std::fs::canonicalize(pack_file(&data, 2)).unwrap();
    writer.gc(&collect_everything()).unwrap();
    reader.refresh().unwrap();
    assert_eq!(held.concat(), crate::image(22, 300_000));
    assert_eq!(maps_of(&pack2).len(), 1);
    drop(held);
    assert_eq!(maps_of(&pack2), Vec::<String>::new());
}

/// Pack data goes to the disk with `O_DIRECT` where the file system takes it, in large aligned
/// writes, while the bytes before the first alignment boundary after a committed length go
/// through the page cache. An ingest that fails after several of those writes leaves the
/// committed bytes as they were, byte for byte, in the file and in a reader's live mapping, and
/// the next ingest appends at the same unaligned length.
#[test]
fn a_failed_ingest_after_direct_writes_leaves_committed_pack_bytes_as_they_were() {
    /// Yields `.0` bytes of noise (unique, so every chunk is new), then fails.
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("input went away"));
            }
            let n = buf.len().min(self.0).min(1 << 20);
            fwrepo_synth::Rng::new(self.0 as u64).fill(&mut buf[..n]);
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = fwrepo_store::InitOptions { chunk_sizes: crate::small_params(), pack_max_size: 256 << 20 };
    Store::init(&data, &opts).unwrap();
    let store = Store::open(&data).unwrap();
    let a = crate::image(31, 3_000_001);
    let a_id = store.ingest_reader(&a[..], "a").unwrap().blob;
    let pack = pack_file(&data, 1);
    let committed = std::fs::read(&pack).unwrap();
    assert!(!committed.len().is_multiple_of(4096), "the committed length should end inside a block");
    let reader = Store::open_read_only(&data).unwrap();
    let held = reader.read_all(&a_id).unwrap();

    // 64 MiB of new chunks, more than the staging buffers hold, then the input fails.
    let e = store.ingest_reader(Failing(64 << 20), "failing").unwrap_err();
    assert!(e.to_string().contains("input went away"), "{e}");
    assert!(std::fs::read(&pack).unwrap() == committed, "the pack was not cut back to its committed bytes");
    assert!(held.concat() == a, "a live mapping of committed bytes changed");
    assert!(store.fsck().unwrap().is_clean());

    let b = crate::image(32, 40 << 20);
    let b_id = store.ingest_reader(&b[..], "b").unwrap().blob;
    assert!(std::fs::read(&pack).unwrap()[..committed.len()] == committed[..], "committed bytes changed");
    assert!(held.concat() == a);
    reader.refresh().unwrap();
    assert!(crate::read_all(&reader, &b_id) == b);
    assert!(crate::read_all(&reader, &a_id) == a);
    assert!(store.fsck().unwrap().is_clean());
    drop(store);
    let store = Store::open(&data).unwrap();
    assert!(store.fsck().unwrap().is_clean());
    assert!(crate::read_all(&store, &b_id) == b);
}
