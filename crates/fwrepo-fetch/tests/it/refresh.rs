//! TUF refresh over a transport: files stored as served, the cheap unchanged case, reuse of
//! stored files, and the updater's refusals surfacing as typed errors.

use fwrepo_fetch::{Error, Fault, MetadataStore, Transport};
use fwrepo_tuf::{Limits, RoleName};

use crate::support::{MemStore, Origin, data, t0};

#[tokio::test]
async fn first_refresh_stores_every_file_exactly_as_served() {
    let mut o = Origin::new();
    o.publish("fw/a.bin", &data(1, 10_000));
    let f = o.fetcher();
    let store = MemStore::default();
    let r = f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap();
    assert!(!r.timestamp_unchanged);
    let saved = store.saved.lock().unwrap().clone();
    let names: Vec<&str> = saved.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["timestamp.json", "2.snapshot.json", "2.targets.json"]);
    for s in &saved {
        let served = served(&o, &s.name);
        assert_eq!(s.bytes, served, "{} not stored as served", s.name);
        assert!(s.etag.is_some());
    }
    assert_eq!(r.updater.timestamp().unwrap().signed.version, 2);
}

fn served(o: &Origin, name: &str) -> Vec<u8> {
    o.repo.files().into_iter().find(|f| f.name == name).unwrap().bytes
}

#[tokio::test]
async fn unchanged_upstream_costs_a_root_probe_and_one_304() {
    let mut o = Origin::new();
    o.publish("fw/a.bin", &data(1, 10_000));
    let f = o.fetcher();
    let store = MemStore::default();
    f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap();
    let before = f.transport().wire().stats();
    let r = f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap();
    let after = f.transport().wire().stats();
    assert!(r.timestamp_unchanged && r.fetched.is_empty());
    assert_eq!(after.requests - before.requests, 2, "2.root.json (404) and timestamp.json (304)");
    assert_eq!(after.body_bytes, before.body_bytes);
    assert!(after.wire_bytes() - before.wire_bytes() < 2048);
    let ts = f.transport().requests().into_iter().rev().find(|r| r.path == "/metadata/timestamp.json").unwrap();
    assert!(ts.if_none_match.is_some());
    // The trusted state is complete: targets are found without fetching anything.
    let mut up = r.updater;
    o.peer.fault("/metadata/", Fault::Status(500), None);
    let found = f.find_target(&mut up, &fwrepo_tuf::TargetPath::new("fw/a.bin").unwrap(), &store).await.unwrap();
    assert!(found.is_some());
}

#[tokio::test]
async fn a_new_release_fetches_timestamp_snapshot_and_targets_again() {
    let mut o = Origin::new();
    o.publish("fw/a.bin", &data(1, 10_000));
    let f = o.fetcher();
    let store = MemStore::default();
    f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap();
    o.publish("fw/b.bin", &data(2, 10_000));
    let r = f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap();
    assert!(!r.timestamp_unchanged);
    assert_eq!(r.fetched, ["timestamp.json", "3.snapshot.json", "3.targets.json"]);
}

#[tokio::test]
async fn rolled_back_timestamp_is_refused() {
    let mut o = Origin::new();
    let old_ts = served(&o, "timestamp.json");
    o.publish("fw/a.bin", &data(1, 10_000));
    let f = o.fetcher();
    let store = MemStore::default();
    f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap();
    o.peer.insert("/metadata/timestamp.json", old_ts);
    let err = f.refresh(&o.root_v1, &store, t0(), Limits::default()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Metadata { source: fwrepo_tuf::Error::Rollback { trusted: 2, new: 1, .. }, .. }),
        "{err}"
    );
    // The stored timestamp is still the newer one.
    let kept = store.load(&RoleName::timestamp()).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&kept.bytes).contains("\"version\":2"));
}

#[tokio::test]
async fn an_expired_timestamp_is_refused_as_a_freeze() {
    let o = Origin::new();
    let f = o.fetcher();
    let store = MemStore::default();
    let later = t0() + chrono::TimeDelta::days(2);
    let err = f.refresh(&o.root_v1, &store, later, Limits::default()).await.unwrap_err();
    assert!(matches!(&err, Error::Metadata { source: fwrepo_tuf::Error::Expired { .. }, .. }), "{err}");
}

#[tokio::test]
async fn an_oversized_timestamp_is_cut_off_at_the_limit() {
    let o = Origin::new();
    o.peer.insert("/metadata/timestamp.json", vec![b' '; 1_000_000]);
    let f = o.fetcher();
    let err = f.refresh(&o.root_v1, &MemStore::default(), t0(), Limits::default()).await.unwrap_err();
    assert!(matches!(err, Error::TooLong { max: 16_384, .. }), "{err}");
    assert!(f.transport().wire().stats().body_bytes < 40_000);
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_the_timestamp_is_refused() {
    let mut o = Origin::new();
    o.publish("fw/a.bin", &data(1, 10_000));
    o.peer.fault("/metadata/2.snapshot.json", Fault::FlipByte { offset: 30 }, None);
    let err = o.fetcher().refresh(&o.root_v1, &MemStore::default(), t0(), Limits::default()).await.unwrap_err();
    assert!(matches!(err, Error::Metadata { ref name, .. } if name == "2.snapshot.json"), "{err}");
}

#[tokio::test]
async fn metadata_server_errors_are_retried() {
    let o = Origin::new();
    o.peer.fault("/metadata/timestamp.json", Fault::Status(502), Some(2));
    let f = o.fetcher();
    f.refresh(&o.root_v1, &MemStore::default(), t0(), Limits::default()).await.unwrap();
    assert_eq!(f.retries(), 2);
}
