//! Downloads over an in-memory origin and mirrors: deltas, failover, hostile peers, seeds
//! and resume.

use std::collections::HashSet;
use std::path::Path;

use fwget::delta::Notice;
use fwrepo_chunk::Digest;
use fwrepo_fetch::{Fault, MemoryTransport, Transport};

use crate::support::*;

/// Two releases of one 300 kB component; returns origin, v1, v2 and the two target paths.
fn two_releases() -> (Origin, Vec<u8>, Vec<u8>, String, String) {
    let mut o = Origin::new();
    let v1 = data(1, 300_000);
    let v2 = edited(&v1);
    let p1 = o.release(
        "2025.01.0",
        "2025-01-15",
        &[Comp { name: "System ROM", version: "1.0", models: &[DL380], bytes: &v1 }],
    );
    let p2 = o.release(
        "2025.05.0",
        "2025-05-15",
        &[Comp { name: "System ROM", version: "1.2", models: &[DL380], bytes: &v2 }],
    );
    (o, v1, v2, p1[0].to_string(), p2[0].to_string())
}

async fn fetch(
    c: &fwget::client::Client<MemoryTransport>,
    target: &str,
    out: &Path,
) -> fwget::Result<fwget::client::FetchResult> {
    let (_, all) = c.refresh().await?;
    let picked = fwget::client::pick_targets(&all, &[target.to_owned()])?;
    c.fetch(&all, &picked, out, &[], &()).await
}

/// Nothing but final, verified files (and no working files) in `out`.
fn assert_only_final(out: &Path, expect: &[(&str, &[u8])]) {
    let mut names: Vec<String> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut want: Vec<String> = expect.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    for (n, bytes) in expect {
        assert!(std::fs::read(out.join(n)).unwrap() == *bytes, "{n} differs");
    }
}

/// No file under a final name that does not match signed hashes: only working files or
/// files equal to `good`.
fn assert_no_unverified_final(out: &Path, good: &[&[u8]]) {
    for e in std::fs::read_dir(out).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".fwget-") {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        assert!(good.contains(&bytes.as_slice()), "{name} is under a final name but unverified");
    }
}

fn file_name(target: &str) -> String {
    target.rsplit('/').next().unwrap().to_owned()
}

fn distinct_new_chunks(old: &[u8], new: &[u8]) -> (u64, u64) {
    let have: HashSet<Digest> = index_of(old).chunks.iter().map(|c| c.0).collect();
    let mut seen = HashSet::new();
    let mut n = 0;
    let mut bytes = 0;
    for (id, len) in index_of(new).chunks {
        if !have.contains(&id) && seen.insert(id) {
            n += 1;
            bytes += u64::from(len);
        }
    }
    (n, bytes)
}

#[tokio::test]
async fn second_version_fetches_only_the_missing_chunks() {
    let (o, v1, v2, p1, p2) = two_releases();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let r1 = fetch(&c, &p1, &out).await.unwrap();
    assert_eq!(r1.outcome.files[0].seed_bytes, 0);
    assert_eq!(std::fs::read(out.join(file_name(&p1))).unwrap(), v1);

    let before = o.peer.requests().len();
    let body_before = o.peer.wire().stats().body_bytes;
    let r2 = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&file_name(&p1), &v1), (&file_name(&p2), &v2)]);
    let f = &r2.outcome.files[0];
    let (new_chunks, new_bytes) = distinct_new_chunks(&v1, &v2);
    assert!(new_chunks >= 3, "the edits touch several chunks");
    assert_eq!(f.seed_bytes + new_bytes, v2.len() as u64, "every chunk not new came from the seed");
    // Range requests never exceed the runs of new chunks, and the bodies stay close to the
    // new chunks (gaps filled only when cheaper than a request).
    let ranges = o.peer.requests()[before..].iter().filter(|r| r.path == blob_path(&v2)).count() as u64;
    assert!(ranges >= 1 && ranges <= new_chunks, "{ranges} range requests for {new_chunks} new chunks");
    let blob_body: u64 = f.wire_bytes;
    assert!(blob_body < new_bytes + 64 * 1024 + 4096, "fetched {blob_body} for {new_bytes} new bytes");
    assert!(o.peer.wire().stats().body_bytes - body_before < v2.len() as u64 / 2);
    assert_eq!(r2.wire.requests, o.peer.wire().stats().requests);
}

#[tokio::test]
async fn a_mirror_that_flips_a_byte_is_named_and_the_origin_serves_the_chunk() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    let m = mirror_of(&o, &[blob_path(&v2), index_path(&v2)]);
    m.fault(blob_path(&v2), Fault::FlipByte { offset: 100 }, None);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[("mem://bad-mirror", m.clone())]);
    let r = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&file_name(&p2), &v2)]);
    assert!(
        r.outcome.notices.iter().any(|n| matches!(n, Notice::BadMirror { peer, .. } if peer == "mem://bad-mirror")),
        "{:?}",
        r.outcome.notices
    );
    assert!(o.peer.requests().iter().any(|q| q.path == blob_path(&v2)), "the origin served the rest");
    // Chunks the mirror served right before the bad one were kept.
    assert!(r.outcome.files[0].requests >= 2);
}

#[tokio::test]
async fn a_mirror_serving_a_wrong_chunk_index_is_skipped() {
    let (o, v1, v2, _p1, p2) = two_releases();
    let m = mirror_of(&o, &[blob_path(&v2)]);
    m.insert(index_path(&v2), index_of(&v1).to_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[("mem://stale-mirror", m)]);
    let r = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&file_name(&p2), &v2)]);
    assert!(
        r.outcome.notices.iter().any(|n| matches!(n, Notice::BadMirror { peer, .. } if peer == "mem://stale-mirror"))
    );
}

#[tokio::test]
async fn flipped_byte_at_the_only_peer_fails_verification_and_leaves_no_final_file() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    o.peer.fault(blob_path(&v2), Fault::FlipByte { offset: 9000 }, None);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let e = fetch(&c, &p2, &out).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::VERIFICATION, "{e}");
    assert_no_unverified_final(&out, &[]);
}

#[tokio::test]
async fn wrong_chunk_index_at_the_only_peer_is_a_verification_failure() {
    let (o, v1, v2, _p1, p2) = two_releases();
    o.peer.insert(index_path(&v2), index_of(&v1).to_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let e = fetch(&c, &p2, &out).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::VERIFICATION, "{e}");
    assert!(!out.join(file_name(&p2)).exists());
}

#[tokio::test]
async fn persistently_truncated_ranges_fail_as_network_and_leave_no_final_file() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    o.peer.fault(blob_path(&v2), Fault::Truncate { keep: 5000 }, None);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let e = fetch(&c, &p2, &out).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::NETWORK, "{e}");
    assert_no_unverified_final(&out, &[]);
}

#[tokio::test]
async fn a_peer_that_ignores_range_is_read_whole_once_and_said_so() {
    let (o, v1, v2, p1, p2) = two_releases();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    fetch(&c, &p1, &out).await.unwrap();
    o.peer.fault(blob_path(&v2), Fault::IgnoreRange, None);
    let r = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&file_name(&p1), &v1), (&file_name(&p2), &v2)]);
    assert!(r.outcome.notices.iter().any(|n| matches!(n, Notice::NoRanges { .. })));
    assert_eq!(range_requests(&o.peer, &v2), 1, "one whole-blob read");
}

#[tokio::test]
async fn a_stalled_mirror_times_out_and_the_origin_serves() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    let m = mirror_of(&o, &[blob_path(&v2), index_path(&v2)]);
    m.fault(blob_path(&v2), Fault::Stall { after: 10 }, None);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[("mem://slow", m)]);
    let r = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&file_name(&p2), &v2)]);
    assert!(r.outcome.notices.iter().any(|n| matches!(n, Notice::PeerFailed { peer, .. } if peer == "mem://slow")));
}

#[tokio::test]
async fn server_errors_everywhere_are_a_network_failure() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    o.peer.fault(blob_path(&v2), Fault::Status(500), None);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let e = fetch(&c, &p2, &out).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::NETWORK, "{e}");
    assert_no_unverified_final(&out, &[]);
}

#[tokio::test]
async fn forbidden_blobs_are_not_entitled() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    o.peer.fault(blob_path(&v2), Fault::Status(403), None);
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let e = fetch(&c, &p2, &tmp.path().join("out")).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::NOT_ENTITLED, "{e}");
}

#[tokio::test]
async fn rolled_back_metadata_is_refused() {
    let (o, _v1, _v2, _p1, p2) = two_releases();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    c.refresh().await.unwrap();
    // An attacker replays the timestamp of the first release (version 1) over the current.
    let old_ts = {
        let fresh = Origin::new();
        fresh.peer.file("/metadata/timestamp.json").unwrap()
    };
    o.peer.insert("/metadata/timestamp.json", old_ts);
    let e = fetch(&c, &p2, &tmp.path().join("out")).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::VERIFICATION, "{e}");
}

#[tokio::test]
async fn a_corrupted_seed_is_detected_and_its_chunks_fetched() {
    let (o, v1, v2, _p1, p2) = two_releases();
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed.bin");
    std::fs::write(&seed, &v1).unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let (_, all) = c.refresh().await.unwrap();
    let picked = fwget::client::pick_targets(&all, std::slice::from_ref(&p2)).unwrap();
    // Index the seed, then corrupt it without changing size, mtime or inode.
    let params = fwget::client::signed_chunker(&all).unwrap();
    fwget::seeds::Seeds::scan(&c.dir.seeds_path(), std::slice::from_ref(&seed), params).unwrap().save().unwrap();
    let mtime = std::fs::metadata(&seed).unwrap().modified().unwrap();
    let mut bad = v1.clone();
    bad[10] ^= 0xff;
    bad[250_000] ^= 0xff;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seed).unwrap();
        f.write_all_at(&bad, 0).unwrap();
        f.set_modified(mtime).unwrap();
    }
    let r = c.fetch(&all, &picked, &out, std::slice::from_ref(&seed), &()).await.unwrap();
    assert_only_final(&out, &[(&file_name(&p2), &v2)]);
    assert!(r.outcome.notices.iter().any(|n| matches!(n, Notice::BadSeed { .. })), "{:?}", r.outcome.notices);
    assert!(r.outcome.files[0].seed_bytes > 0, "the good chunks of the seed were still used");
}

#[tokio::test]
async fn an_interrupted_download_resumes_from_its_journal() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // The connection drops after 60 kB on each of three tries: the run fails, keeping what verified.
    o.peer.fault(blob_path(&v2), Fault::DropAfter { bytes: 60_000 }, Some(3));
    let c = client(tmp.path(), &o, &[]);
    let e = fetch(&c, &p2, &out).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::NETWORK, "{e}");
    assert_no_unverified_final(&out, &[]);
    let name = file_name(&p2);
    assert!(out.join(format!(".fwget-{name}.journal")).exists());
    o.peer.clear_faults();
    let body_before = o.peer.wire().stats().body_bytes;
    let r = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&name, &v2)]);
    assert!(r.outcome.files[0].resumed_chunks > 0);
    let second = o.peer.wire().stats().body_bytes - body_before;
    assert!(second < v2.len() as u64 - 80_000, "resumed run fetched {second} bytes");
}

#[tokio::test]
async fn a_journal_naming_chunks_the_part_file_lacks_is_not_trusted() {
    let (o, _v1, v2, _p1, p2) = two_releases();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let name = file_name(&p2);
    let idx = index_of(&v2);
    // A journal claiming every chunk, over a part file of zeros.
    let mut j = format!("fwget-journal 1 {} {}\n", Digest::of(&v2), v2.len());
    for (off, (id, _)) in idx.offsets() {
        j.push_str(&format!("{off} {id}\n"));
    }
    std::fs::write(out.join(format!(".fwget-{name}.journal")), j).unwrap();
    std::fs::write(out.join(format!(".fwget-{name}.part")), vec![0u8; v2.len()]).unwrap();
    let c = client(tmp.path(), &o, &[]);
    let r = fetch(&c, &p2, &out).await.unwrap();
    assert_only_final(&out, &[(&name, &v2)]);
    assert_eq!(r.outcome.files[0].resumed_chunks, 0);
}

#[tokio::test]
async fn two_targets_with_one_file_name_are_refused_before_anything_is_written() {
    let mut o = Origin::new();
    let (a, b) = (data(1, 30_000), data(2, 30_000));
    let pa = o.release("2025.01.0", "2025-01-15", &[Comp { name: "ROM", version: "1.0", models: &[DL380], bytes: &a }]);
    let pb = o.release("2025.02.0", "2025-02-15", &[Comp { name: "ROM", version: "1.0", models: &[DL360], bytes: &b }]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let c = client(tmp.path(), &o, &[]);
    let (_, all) = c.refresh().await.unwrap();
    let picked = fwget::client::pick_targets(&all, &[pa[0].to_string(), pb[0].to_string()]).unwrap();
    let e = c.fetch(&all, &picked, &out, &[], &()).await.unwrap_err();
    assert!(e.to_string().contains("same file name"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}
