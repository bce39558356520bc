//! Following the writer: stale revocation data fails closed, and a server started on a data
//! dir that lacks column families opens its store again once the writer creates them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fwrepo_entitle::{Entitlements, Revocations, UnixTime};
use fwrepo_server::{DirMetadata, ServerConfig, ServerState};
use fwrepo_store::{OpenOptions, Store};
use http::{Method, StatusCode};

use crate::support::*;

/// Polls `f` until it returns true, for at most 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stale_revocations_fail_closed() {
    let fx = Fixture::with_config(|c| {
        c.refresh_interval_s = 1;
        c.revocation_max_age_s = Some(2);
    });
    let failing = Arc::new(AtomicBool::new(false));
    let inject = Arc::clone(&failing);
    let refresher = fx.rt.spawn(Arc::clone(&fx.state).refresh_every(Duration::from_millis(100), move |_| {
        if inject.load(Ordering::SeqCst) { Err("injected refresh failure") } else { Ok(verifier(Revocations::new())) }
    }));
    let auth = [bearer(&token(DL380))];
    assert_eq!(fx.get(&fx.big.url(), &auth).status, StatusCode::OK);
    assert_eq!(fx.get("/readyz", &[]).status, StatusCode::OK);

    // Refreshes fail (descriptor exhaustion, a broken index): after the bound, every gated
    // request is refused, whatever the token, until a refresh succeeds.
    failing.store(true, Ordering::SeqCst);
    eventually("gated download refused", || fx.get(&fx.big.url(), &auth).status == StatusCode::SERVICE_UNAVAILABLE);
    let r = fx.get(&fx.big.url(), &auth);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(fx.get(&fx.big.hashed_target(), &auth).status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fx.get(&format!("{}/chunks", fx.big.url()), &auth).status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fx.get(&fx.big.url(), &[]).status, StatusCode::SERVICE_UNAVAILABLE);
    // Metadata and the catalog stay public; health says alive, readiness says why not.
    assert_eq!(fx.get("/metadata/timestamp.json", &[]).status, StatusCode::OK);
    assert_eq!(fx.get("/v1/catalog/models", &[]).status, StatusCode::OK);
    assert_eq!(fx.get("/healthz", &[]).status, StatusCode::OK);
    let ready = fx.get("/readyz", &[]);
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&ready.body).contains("revocation data is stale"), "{:?}", ready.body);
    assert!(fx.metric("fwrepo_refresh_failures_consecutive") >= 1);
    assert!(fx.metric("fwrepo_refresh_failures_total") >= 1);
    assert!(fx.metric("fwrepo_revocations_age_seconds") >= 2);

    failing.store(false, Ordering::SeqCst);
    eventually("downloads again after a refresh", || fx.get(&fx.big.url(), &auth).status == StatusCode::OK);
    assert_eq!(fx.get("/readyz", &[]).status, StatusCode::OK);
    assert_eq!(fx.metric("fwrepo_refresh_failures_consecutive"), 0);
    assert!(fx.metric("fwrepo_revocations_age_seconds") < 2);
    refresher.abort();
}

#[test]
fn revocation_age_limit_must_exceed_the_refresh_interval() {
    assert!(ServerConfig::from_toml("x.toml", "refresh_interval_s = 10\nrevocation_max_age_s = 10").is_err());
    assert!(ServerConfig::from_toml("x.toml", "refresh_interval_s = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "token_max_lifetime_s = 315360000").is_err());
    let c = ServerConfig::from_toml("x.toml", "refresh_interval_s = 3").unwrap();
    assert_eq!(c.revocation_max_age(), Duration::from_secs(15));
}

/// A server over a read-only store of `data`, with its own runtime.
struct Reader {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    state: Arc<ServerState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Reader {
    fn start(data: &std::path::Path, meta: &std::path::Path) -> Reader {
        let opts = OpenOptions { read_only: true, extra_column_families: fwrepo_server::column_families() };
        let store = Arc::new(Store::open_with(data, &opts).unwrap());
        let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
        let records = Entitlements::new(store.db().clone());
        let initial = verifier(records.revocations().unwrap());
        let state = ServerState::new(&config, store, Arc::new(DirMetadata::new(meta).unwrap()), initial)
            .unwrap()
            .with_issuer(issuer(), records);
        let state = Arc::new(state);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let bound = rt.block_on(fwrepo_server::bind(config)).unwrap();
        let addr = bound.local_addr();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(bound.run(Arc::clone(&state), async {
            let _ = stop_rx.await;
        }));
        Reader { rt, addr, state, _stop: stop }
    }

    fn get(&self, path: &str, headers: &[(&str, String)]) -> StatusCode {
        self.rt.block_on(send(self.addr, false, Method::GET, path, headers, Bytes::new())).status
    }

    fn post_serial(&self, serial: &str) -> StatusCode {
        let h = [("content-type", "application/json".to_owned())];
        let body = Bytes::from(format!(r#"{{"serial":"{serial}"}}"#));
        self.rt.block_on(send(self.addr, false, Method::POST, "/v1/tokens", &h, body)).status
    }

    fn refresh(&self) {
        self.state.refresh_with(|s| s.entitlements().revocations().map(verifier)).unwrap();
    }
}

#[test]
fn server_on_an_old_data_dir_sees_revocations_once_the_writer_adds_the_families() {
    // A data dir as an older fwrepo left it: no entitlement column families.
    let mut fx = Fixture::new();
    let dir = std::mem::replace(&mut fx.dir, tempfile::tempdir().unwrap());
    let big = fx.big.clone();
    let done = fx.shutdown();
    fx.rt.block_on(done).unwrap().unwrap();
    // Dropping the fixture releases the writer lock its state held.
    drop(fx);
    let data = dir.path().join("data");
    {
        let index = data.join("index");
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &index).unwrap();
        let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &index, &names).unwrap();
        for cf in fwrepo_entitle::COLUMN_FAMILIES {
            db.drop_cf(cf).unwrap();
        }
    }

    let reader = Reader::start(&data, &dir.path().join("metadata"));
    let (tok, _) = token_at("serial:S1", DL380, UnixTime::now());
    let auth = [bearer(&tok)];
    assert_eq!(reader.get(&big.url(), &auth), StatusCode::OK);
    assert_eq!(reader.post_serial("S1"), StatusCode::FORBIDDEN, "no records yet");

    // The first writer command since the upgrade (any: this one asks for no entitlement
    // families) creates every family; then records are imported and a subject revoked.
    {
        let writer = Store::open(&data).unwrap();
        let records = Entitlements::new(writer.db().clone());
        let csv = format!("serial,model,warranty_end\nS1,{DL380},2099-12-31\nS2,{DL380},2099-12-31\n");
        records.import("serials.csv", csv.as_bytes(), UnixTime::now()).unwrap();
        records.revoke_subject(&"serial:S1".parse().unwrap(), UnixTime::now()).unwrap();
    }
    reader.refresh();
    assert_eq!(reader.get(&big.url(), &auth), StatusCode::UNAUTHORIZED, "revoked subject still downloads");
    assert_eq!(reader.post_serial("S1"), StatusCode::FORBIDDEN);
    assert_eq!(reader.post_serial("S2"), StatusCode::OK, "issuance needs a restart");
    // Later writes arrive by catching up, on the store opened again.
    {
        let opts = OpenOptions { read_only: false, extra_column_families: fwrepo_entitle::COLUMN_FAMILIES.to_vec() };
        let writer = Store::open_with(&data, &opts).unwrap();
        Entitlements::new(writer.db().clone()).lift_subject(&"serial:S1".parse().unwrap()).unwrap();
    }
    reader.refresh();
    assert_eq!(reader.get(&big.url(), &auth), StatusCode::OK);
    assert!(reader.state.store().db().absent_families().is_empty());
}

#[test]
fn a_slow_refresh_round_does_not_stall_the_connections() {
    // Two refreshers whose every round blocks for 2 s, on a runtime of two workers: if a
    // round ran on a worker, both would be taken and no request could be answered meanwhile.
    let fx = Fixture::new();
    let slow = |_: &ServerState| {
        std::thread::sleep(Duration::from_secs(2));
        Ok::<_, &str>(verifier(Revocations::new()))
    };
    let refreshers: Vec<_> =
        (0..2).map(|_| fx.rt.spawn(Arc::clone(&fx.state).refresh_every(Duration::from_millis(20), slow))).collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(fx.get("/healthz", &[]).status, StatusCode::OK);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1000), "a request waited {took:?} behind a refresh round");
    }
    for r in refreshers {
        r.abort();
    }
}
