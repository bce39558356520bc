//! Readers running beside a writer see complete blobs only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fwrepo_store::{Digest, Error, Store};

#[test]
fn readers_see_only_complete_blobs_while_a_writer_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::new_store(dir.path()));
    let inputs: Vec<Vec<u8>> = (0..12).map(|i| crate::image(100 + i, 400_000 + i as usize * 50_000)).collect();
    let ids: Vec<Digest> = inputs.iter().map(|d| Digest::of(d)).collect();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, inputs, ids, done) = (store.clone(), inputs.clone(), ids.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0usize;
                while !done.load(Ordering::Acquire) {
                    for (id, data) in ids.iter().zip(&inputs) {
                        match store.read_all(id) {
                            Ok(parts) => {
                                assert_eq!(parts.concat(), *data, "blob {id} visible but incomplete");
                                seen += 1;
                            }
                            Err(Error::UnknownBlob { .. }) => {}
                            Err(e) => panic!("reader failed: {e}"),
                        }
                    }
                }
                seen
            })
        })
        .collect();
    for data in &inputs {
        store.ingest_reader(&data[..], "mem").unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn a_reader_in_read_only_mode_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = crate::new_store(dir.path());
    let reader = Store::open_read_only(&dir.path().join("data")).unwrap();
    let data = crate::image(7, 500_000);
    let blob = writer.ingest_reader(&data[..], "mem").unwrap().blob;
    reader.refresh().unwrap();
    assert_eq!(crate::read_all(&reader, &blob), data);
    assert!(matches!(reader.ingest_reader(&b"x"[..], "mem"), Err(Error::ReadOnly { .. })));
}
