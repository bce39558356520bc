//! Garbage collection on a mirror: a blob the served metadata stops naming stays for its grace
//! period and then goes, without any chunk a kept blob uses, and never while a sync runs.

use std::collections::HashSet;
use std::time::Duration;

use fwrepo_chunk::{ChunkIndex, Chunker, ChunkerParams, Digest};
use fwrepo_fetch::Fault;
use fwrepo_mirror::{Error, GcOptions, Mirror};
use fwrepo_tuf::{SigningKey, TargetFile, TargetPath};

use crate::hostile::{Upstream, data, mirror, now, sync};

const HOUR: Duration = Duration::from_secs(3600);

impl Upstream {
    /// Publishes `bytes` as the auth document `auth/NAME`, replacing the previous one (as
    /// `fwrepo auth publish` does). Returns the blob id.
    fn publish_auth(&mut self, name: &str, bytes: &[u8]) -> Digest {
        let index = chunk_index(bytes);
        let blob = Digest::of(bytes);
        self.peer.insert(format!("/v1/blobs/{blob}"), bytes.to_vec());
        self.peer.insert(format!("/v1/blobs/{blob}/chunks"), index.to_bytes());
        let mut t = TargetFile::describing(bytes, None);
        t.custom = Some(serde_json::json!({ "blake3": blob.to_hex(), "chunk_index": index.id().to_hex() }));
        let ring: Vec<&SigningKey> = self.keys.iter().collect();
        let path = TargetPath::new(format!("auth/{name}")).unwrap();
        for f in self.repo.upsert_targets([(path, t)], &ring, now()).unwrap() {
            self.peer.insert(format!("/metadata/{}", f.name), f.bytes.clone());
        }
        blob
    }
}

fn chunk_index(bytes: &[u8]) -> ChunkIndex {
    let chunker = Chunker::new(ChunkerParams::default());
    ChunkIndex {
        blob_len: bytes.len() as u64,
        chunks: chunker.chunks(bytes).map(|r| (Digest::of(&bytes[r.clone()]), r.len() as u32)).collect(),
    }
}

fn chunk_ids(bytes: &[u8]) -> HashSet<Digest> {
    chunk_index(bytes).chunks.into_iter().map(|(id, _)| id).collect()
}

fn collect(m: &Mirror, grace: Duration, at: chrono::DateTime<chrono::Utc>) -> fwrepo_mirror::GcReport {
    m.gc_at(&GcOptions { grace, dry_run: false }, at).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_blob_goes_after_its_grace_period_and_its_shared_chunks_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::new();
    let fw = data(10, 200_000);
    up.publish("2026.01.0", "bios", &fw);
    let old = data(11, 400_000);
    let old_id = up.publish_auth("revocations.json", &old);
    let m = mirror(dir.path(), &up);
    sync(&m, &up).await.unwrap();

    // Nothing is unreferenced yet: a collection keeps everything.
    let t0 = now();
    let r = collect(&m, HOUR, t0);
    assert_eq!((r.blobs_live, r.blobs_in_grace, r.blobs_expired), (2, 0, 0), "{r:?}");

    // The document is replaced by one that shares most of its chunks.
    let mut new = old.clone();
    new[200_000..200_050].fill(0x55);
    let new_id = up.publish_auth("revocations.json", &new);
    sync(&m, &up).await.unwrap();
    let shared = chunk_ids(&old).intersection(&chunk_ids(&new)).count();
    let only_old = chunk_ids(&old).len() - shared;
    assert!(shared > 0 && only_old > 0, "the edit keeps some chunks and changes others");

    // First sighting: kept, and kept a second before its grace period ends.
    let r = collect(&m, HOUR, t0);
    assert_eq!((r.blobs_live, r.blobs_in_grace, r.blobs_expired), (2, 1, 0), "{r:?}");
    assert_eq!(r.next_expiry, Some(t0.timestamp() + 3600));
    let r = collect(&m, HOUR, t0 + chrono::Duration::seconds(3599));
    assert_eq!(r.blobs_expired, 0, "{r:?}");
    assert_eq!(m.store().read_all(&old_id).unwrap().concat(), old, "a download of the old version can finish");

    // A dry run at the end of the grace period names it and removes nothing.
    let later = t0 + chrono::Duration::seconds(3600);
    let dry = m.gc_at(&GcOptions { grace: HOUR, dry_run: true }, later).unwrap();
    assert_eq!(dry.expired, vec![old_id.to_hex()], "{dry:?}");
    assert_eq!(dry.bytes_expired, old.len() as u64);
    assert!(dry.store.is_none());
    assert!(m.store().contains(&old_id).unwrap());

    // Grace over: the old blob goes, with exactly the chunks only it used.
    let r = collect(&m, HOUR, later);
    assert_eq!((r.blobs_live, r.blobs_in_grace, r.blobs_expired), (2, 0, 1), "{r:?}");
    assert_eq!(r.store.as_ref().unwrap().chunks_removed, only_old as u64, "{r:?}");
    assert!(!m.store().contains(&old_id).unwrap());
    assert_eq!(m.store().read_all(&new_id).unwrap().concat(), new);
    assert_eq!(m.store().read_all(&Digest::of(&fw)).unwrap().concat(), fw);
    let fsck = m.store().fsck().unwrap();
    assert!(fsck.is_clean(), "{:?}", fsck.problems);
    assert!(m.missing().unwrap().is_empty());
    // Its record went with it: a later collection has nothing to do.
    let r = collect(&m, Duration::ZERO, later);
    assert_eq!((r.blobs_live, r.blobs_in_grace, r.blobs_expired), (2, 0, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_named_again_within_its_grace_period_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::new();
    let a = data(20, 100_000);
    let b = data(21, 100_000);
    let a_id = up.publish_auth("issuers.json", &a);
    let m = mirror(dir.path(), &up);
    sync(&m, &up).await.unwrap();
    up.publish_auth("issuers.json", &b);
    sync(&m, &up).await.unwrap();
    let t0 = now();
    assert_eq!(collect(&m, HOUR, t0).blobs_in_grace, 1);
    // Back to the first document: its clock stops, and a fresh one starts if it goes again.
    up.publish_auth("issuers.json", &a);
    sync(&m, &up).await.unwrap();
    let r = collect(&m, HOUR, t0 + chrono::Duration::seconds(1800));
    assert_eq!((r.blobs_live, r.blobs_in_grace, r.blobs_expired), (1, 1, 0), "{r:?}");
    up.publish_auth("issuers.json", &b);
    sync(&m, &up).await.unwrap();
    let r = collect(&m, HOUR, t0 + chrono::Duration::seconds(3700));
    assert_eq!(r.blobs_expired, 0, "the grace period of a blob named again starts over: {r:?}");
    assert!(m.store().contains(&a_id).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_a_sync_is_refused_and_the_served_state_stays_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::new();
    let v1 = data(30, 300_000);
    let v1_id = up.publish_auth("revocations.json", &v1);
    let m = mirror(dir.path(), &up);
    sync(&m, &up).await.unwrap();
    let served = crate::hostile::served_timestamp(&m);

    // A sync stalls on the new document's bytes; a collection meanwhile is refused.
    let v2 = data(31, 300_000);
    let v2_id = up.publish_auth("revocations.json", &v2);
    up.peer.fault(format!("/v1/blobs/{v2_id}"), Fault::Stall { after: 10 }, None);
    let syncing = sync(&m, &up);
    let collecting = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.gc(&GcOptions { grace: Duration::ZERO, dry_run: false })
    };
    let (synced, collected) = tokio::join!(syncing, collecting);
    assert!(matches!(collected, Err(Error::Busy { op: "gc", running: "sync" })), "{collected:?}");
    assert!(synced.is_err(), "the stalled sync fails");
    assert_eq!(crate::hostile::served_timestamp(&m), served);

    // With no grace, the collection after the failed sync keeps what is served.
    let r = m.gc(&GcOptions { grace: Duration::ZERO, dry_run: false }).unwrap();
    assert_eq!(r.blobs_live, 1, "{r:?}");
    assert_eq!(m.store().read_all(&v1_id).unwrap().concat(), v1);
    assert!(m.store().fsck().unwrap().is_clean());

    // The honest upstream: the sync completes and switches.
    up.peer.clear_faults();
    let ok = sync(&m, &up).await.unwrap();
    assert_eq!(ok.targets_new, 1);
    assert_eq!(m.store().read_all(&v2_id).unwrap().concat(), v2);
}
