//! Killing an ingest with SIGKILL at random points never breaks the store.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use fwrepo_store::{Digest, Store};
use rand::Rng;

use crate::{bin, fwrepo};

#[test]
fn sigkill_during_ingest_leaves_a_clean_store_with_only_complete_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = fwrepo(&[
        "init",
        "--data",
        data.to_str().unwrap(),
        "--chunk-min",
        "2048",
        "--chunk-avg",
        "8192",
        "--chunk-max",
        "32768",
        "--pack-max-size",
        "2097152",
    ]);
    assert!(out.status.success());

    let mut expected: HashMap<Digest, Vec<u8>> = HashMap::new();
    let mut rng = rand::rng();
    let mut killed_midway = 0;
    let mut all_files = Vec::new();
    for round in 0..10u64 {
        // New content every round, so each kill can land in the middle of pack writes.
        let mut files = Vec::new();
        for i in 0..6u64 {
            let bytes = crate::image(round * 100 + i, 1_000_000 + rng.random_range(0..2_000_000));
            let path = dir.path().join(format!("fw{round}-{i}.bin"));
            std::fs::write(&path, &bytes).unwrap();
            expected.insert(Digest::of(&bytes), bytes);
            files.push(path);
        }
        all_files.extend(files.iter().cloned());
        let mut child = Command::new(bin())
            .arg("ingest")
            .arg("--data")
            .arg(&data)
            .args(&files)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(5..150)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_midway += 1;
        }

        let store = Store::open(&data).unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        let report = store.fsck().unwrap();
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        for blob in store.list_blobs().unwrap() {
            let want = expected.get(&blob).unwrap_or_else(|| panic!("round {round}: unexpected blob {blob}"));
            assert_eq!(&store.read_all(&blob).unwrap().concat(), want, "round {round}: blob {blob} incomplete");
        }
        // Nothing is left in packs beyond what the index accounts for.
        let on_disk: u64 =
            std::fs::read_dir(data.join("packs")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert_eq!(on_disk, store.stats().unwrap().pack_bytes, "round {round}");
    }
    assert!(killed_midway > 0, "no round was interrupted; the test proved nothing");

    // Finally an uninterrupted run stores everything.
    let out = Command::new(bin()).arg("ingest").arg("--data").arg(&data).args(&all_files).output().unwrap();
    assert!(out.status.success());
    let store = Store::open(&data).unwrap();
    assert_eq!(store.list_blobs().unwrap().len(), expected.len());
    assert!(store.fsck().unwrap().is_clean());
}
