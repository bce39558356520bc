//! Bad input gets a clear error and changes nothing.

use fwrepo_store::{ChunkerParams, Error, InitOptions, Store};

#[test]
fn opening_a_directory_that_is_not_a_store_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = Store::open(dir.path()).err().unwrap();
    assert!(matches!(e, Error::NotADataDir { .. }), "{e}");
    assert!(e.to_string().contains("fwrepo init"));
}

#[test]
fn a_data_dir_of_another_format_or_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Store::init(&data, &InitOptions::default()).unwrap();
    let cfg = data.join("fwrepo.json");
    let original = std::fs::read_to_string(&cfg).unwrap();
    for (from, to) in [("\"version\": 1", "\"version\": 2"), ("fwrepo-store", "something-else")] {
        let changed = original.replace(from, to);
        std::fs::write(&cfg, &changed).unwrap();
        let e = Store::open(&data).err().unwrap();
        assert!(matches!(e, Error::UnsupportedFormat { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), changed);
    }
    std::fs::write(&cfg, original.replace("\"chunker\"", "\"surprise\": 1, \"chunker\"")).unwrap();
    assert!(matches!(Store::open(&data).err().unwrap(), Error::Config { .. }));
}

#[test]
fn init_refuses_existing_stores_foreign_directories_and_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Store::init(&data, &InitOptions::default()).unwrap();
    assert!(matches!(Store::init(&data, &InitOptions::default()), Err(Error::AlreadyInitialized { .. })));
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious.txt"), "keep me").unwrap();
    assert!(matches!(Store::init(&other, &InitOptions::default()), Err(Error::NotEmpty { .. })));
    assert_eq!(std::fs::read_to_string(other.join("precious.txt")).unwrap(), "keep me");
    let bad =
        InitOptions { chunk_sizes: ChunkerParams { min_size: 64, avg_size: 32, max_size: 1024 }, ..Default::default() };
    assert!(matches!(Store::init(&dir.path().join("x"), &bad), Err(Error::Config { .. })));
    assert!(!dir.path().join("x").exists());
}

#[test]
fn a_second_writer_is_refused_while_readers_are_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let _writer = crate::new_store(dir.path());
    let e = Store::open(&dir.path().join("data")).err().unwrap();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert!(e.to_string().contains(&format!("pid {}", std::process::id())));
    Store::open_read_only(&dir.path().join("data")).unwrap();
}

#[test]
fn unknown_and_malformed_ids_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let missing = fwrepo_store::Digest::of(b"never stored");
    assert!(matches!(store.read_all(&missing), Err(Error::UnknownBlob { .. })));
    assert!(!store.contains(&missing).unwrap());
    assert!(matches!("xyz".parse::<fwrepo_store::Digest>(), Err(fwrepo_store::ChunkError::MalformedId { .. })));
}

/// A reader that fails halfway leaves the store exactly as it was.
#[test]
fn a_failed_ingest_leaves_nothing_behind() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0).min(1 << 20);
            fwrepo_synth::Rng::new(self.0 as u64).fill(&mut buf[..n]);
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = crate::new_store(dir.path());
    let kept = store.ingest_reader(&crate::image(1, 100_000)[..], "kept").unwrap();
    let before = store.stats().unwrap();
    let e = store.ingest_reader(Failing(30 << 20), "failing").unwrap_err();
    assert!(e.to_string().contains("disk on fire"), "{e}");
    assert_eq!(store.stats().unwrap(), before);
    let pack_bytes: u64 =
        std::fs::read_dir(dir.path().join("data/packs")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(pack_bytes, before.pack_bytes, "uncommitted pack bytes left on disk");
    assert!(store.fsck().unwrap().is_clean());
    assert_eq!(crate::read_all(&store, &kept.blob), crate::image(1, 100_000));
    // And the store keeps working afterwards.
    let again = store.ingest_reader(&crate::image(2, 100_000)[..], "again").unwrap();
    assert_eq!(crate::read_all(&store, &again.blob), crate::image(2, 100_000));
}
