//! The fixture: a data dir with a store holding synthetic firmware blobs, one catalog release
//! over two models, serial entitlements, an issuer keyring, a metadata directory, and the
//! server running on `127.0.0.1:0` in a runtime of its own; plus a small hyper client.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fwrepo_catalog::{Catalog, Component, Kind, ModelName, Release, Sha256};
use fwrepo_entitle::{
    Entitlements, Issuer, IssuerConfig, IssuerKeyring, ModelSet, Revocations, Scope, Subject, UnixTime, Verifier,
};
use fwrepo_server::{DirMetadata, ServerConfig, ServerState};
use fwrepo_store::{ChunkerParams, Digest, InitOptions, OpenOptions, Store};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

pub const DL380: &str = "ProLiant DL380 Gen9";
pub const DL360: &str = "ProLiant DL360 Gen9";
pub const ISS: &str = "fwrepo-test";
pub const AUD: &str = "fwrepo";
const SEED: [u8; 32] = [7; 32];

/// One stored blob and where the catalog publishes it.
#[derive(Clone)]
pub struct Blob {
    pub id: Digest,
    pub bytes: Bytes,
    pub sha256: [u8; 32],
    /// Logical target path, e.g. `firmware/rom.bin`.
    pub target: String,
}

impl Blob {
    /// `/targets/DIR/<sha256>.<name>`.
    pub fn hashed_target(&self) -> String {
        let (dir, name) = self.target.rsplit_once('/').unwrap();
        format!("/targets/{dir}/{}.{name}", hex::encode(self.sha256))
    }

    pub fn url(&self) -> String {
        format!("/v1/blobs/{}", self.id)
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.id)
    }
}

pub struct Fixture {
    pub rt: Runtime,
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    /// 300 kB, model DL380.
    pub big: Blob,
    /// 50 kB, model DL360 only.
    pub other: Blob,
    /// 0 bytes, model DL380.
    pub empty: Blob,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<Result<(), fwrepo_server::Error>>>,
}

pub fn keyring() -> IssuerKeyring {
    IssuerKeyring::from_seeds(&[SEED]).unwrap()
}

pub fn issuer() -> Issuer {
    Issuer::new(IssuerConfig::new(ISS, AUD), keyring()).unwrap()
}

pub fn verifier(revocations: Revocations) -> Verifier {
    Verifier::new(keyring().verifying_keys(), revocations, AUD).with_issuer(ISS)
}

/// A token for `sub` covering `models` (`*` for all), valid from `now` for a day.
pub fn token_at(sub: &str, models: &str, now: UnixTime) -> (String, fwrepo_entitle::Claims) {
    let t = issuer()
        .mint(sub.parse::<Subject>().unwrap(), Scope::Download, ModelSet::parse_list(models).unwrap(), None, now)
        .unwrap();
    (t.token, t.claims)
}

pub fn token(models: &str) -> String {
    token_at("serial:S1", models, UnixTime::now()).0
}

pub fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub fn component(name: &str, blob: &Blob, models: &[&str]) -> Component {
    Component {
        name: name.parse().unwrap(),
        kind: Kind::Firmware,
        version: "1.0".parse().unwrap(),
        target: blob.target.parse().unwrap(),
        blob: blob.id,
        length: blob.bytes.len() as u64,
        sha256: Sha256(blob.sha256),
        models: models.iter().map(|m| ModelName::new(*m).unwrap()).collect(),
    }
}

pub fn ingest(store: &Store, bytes: Vec<u8>, target: &str) -> Blob {
    let report = store.ingest_reader(std::io::Cursor::new(bytes.clone()), target).unwrap();
    Blob { id: report.blob, bytes: Bytes::from(bytes), sha256: report.sha256, target: target.to_owned() }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_config(|_| {})
    }

    pub fn with_config(tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
        Fixture::with_packs(InitOptions::default().pack_max_size, tweak)
    }

    /// The same with packs of at most `pack_max_size` bytes (small: blobs span packs).
    pub fn with_packs(pack_max_size: u64, tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
        let chunk_sizes = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
        Fixture::with_store(chunk_sizes, pack_max_size, tweak)
    }

    /// The same with the store's chunker sizes given.
    pub fn with_store(
        chunk_sizes: ChunkerParams,
        pack_max_size: u64,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Store::init(&data, &InitOptions { chunk_sizes, pack_max_size }).unwrap();
        let opts = OpenOptions { read_only: false, extra_column_families: fwrepo_server::column_families() };
        let store = Store::open_with(&data, &opts).unwrap();

        let mut rng = fwrepo_synth::Rng::new(42);
        let big = ingest(&store, fwrepo_synth::firmware_image(&mut rng, 300_000), "firmware/rom-big.bin");
        let other = ingest(&store, fwrepo_synth::firmware_image(&mut rng, 50_000), "firmware/nic-other.bin");
        let empty = ingest(&store, Vec::new(), "firmware/empty.bin");

        let release = Release {
            id: "2025.01.0".parse().unwrap(),
            name: "Service Pack for ProLiant 2025.01.0".into(),
            date: "2025-01-15".parse().unwrap(),
            components: vec![
                component("System ROM", &big, &[DL380]),
                component("NIC Firmware", &other, &[DL360]),
                component("Empty Tool", &empty, &[DL380]),
            ],
        };
        Catalog::new(store.db().clone()).add_release(&release).unwrap();
        let records = Entitlements::new(store.db().clone());
        let csv = format!("serial,model,warranty_end\nS1,{DL380},2099-12-31\nS9,{DL380},2001-01-01\n");
        records.import("serials.csv", csv.as_bytes(), UnixTime::now()).unwrap();

        let meta = dir.path().join("metadata");
        std::fs::create_dir(&meta).unwrap();
        std::fs::write(meta.join("timestamp.json"), br#"{"signed":{"_type":"timestamp"}}"#).unwrap();
        std::fs::write(meta.join("1.root.json"), br#"{"signed":{"_type":"root"}}"#).unwrap();

        let mut config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
        config.audit_log = Some(dir.path().join("audit.jsonl"));
        tweak(&mut config);
        let state = ServerState::new(
            &config,
            Arc::new(store),
            Arc::new(DirMetadata::new(&meta).unwrap()),
            verifier(Revocations::new()),
        )
        .unwrap()
        .with_issuer(issuer(), records);
        let state = Arc::new(state);

        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let bound = rt.block_on(fwrepo_server::bind(config)).unwrap();
        let addr = bound.local_addr();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel();
        let st = Arc::clone(&state);
        rt.spawn(async move {
            let r = bound
                .run(st, async {
                    let _ = stop_rx.await;
                })
                .await;
            let _ = done_tx.send(r);
        });
        Fixture { rt, addr, state, big, other, empty, dir, stop: Some(stop), done: Some(done) }
    }

    /// Stores a `len`-byte blob and publishes it for DL380 in a release of its own; the cached
    /// facts are dropped so the server sees it.
    pub fn add_blob(&self, len: usize) -> Blob {
        let store = self.state.store();
        let mut rng = fwrepo_synth::Rng::new(len as u64);
        let blob = ingest(&store, fwrepo_synth::firmware_image(&mut rng, len), "firmware/rom-huge.bin");
        let release = Release {
            id: "2025.02.0".parse().unwrap(),
            name: "Service Pack for ProLiant 2025.02.0".into(),
            date: "2025-02-15".parse().unwrap(),
            components: vec![component("Huge ROM", &blob, &[DL380])],
        };
        Catalog::new(store.db().clone()).add_release(&release).unwrap();
        self.state.refresh().unwrap();
        blob
    }

    /// Asks the server to shut down; returns a receiver for its result.
    pub fn shutdown(&mut self) -> oneshot::Receiver<Result<(), fwrepo_server::Error>> {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap()
    }

    pub fn get(&self, path: &str, headers: &[(&str, String)]) -> Resp {
        self.request(Method::GET, path, headers, Bytes::new())
    }

    pub fn head(&self, path: &str, headers: &[(&str, String)]) -> Resp {
        self.request(Method::HEAD, path, headers, Bytes::new())
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        let h = [("content-type", "application/json".to_owned())];
        self.request(Method::POST, path, &h, Bytes::from(body.to_owned()))
    }

    /// A POST from the loopback address `src`, another client.
    pub fn post_from(&self, src: [u8; 4], path: &str, body: &str) -> Resp {
        let h = [("content-type", "application/json".to_owned())];
        self.rt.block_on(async {
            let stream = connect_from(src, self.addr).await;
            send_on(stream, self.addr, false, Method::POST, path, &h, Bytes::from(body.to_owned())).await
        })
    }

    pub fn request(&self, method: Method, path: &str, headers: &[(&str, String)], body: Bytes) -> Resp {
        self.rt.block_on(send(self.addr, false, method, path, headers, body))
    }

    /// The same over HTTP/2 with prior knowledge.
    pub fn get_h2(&self, path: &str, headers: &[(&str, String)]) -> Resp {
        self.rt.block_on(send(self.addr, true, Method::GET, path, headers, Bytes::new()))
    }

    /// A line of `/metrics` output, by prefix; its value.
    pub fn metric(&self, series: &str) -> u64 {
        let text = String::from_utf8(self.get("/metrics", &[]).body.to_vec()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0)
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.audit_file_lines("audit.jsonl")
    }

    /// The records of one audit file (`audit.jsonl`, `audit.jsonl.1`, …).
    pub fn audit_file_lines(&self, name: &str) -> Vec<serde_json::Value> {
        self.state.flush_audit();
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Entitlement records, written into the store the server reads.
    pub fn records(&self) -> Entitlements {
        Entitlements::new(self.state.store().db().clone())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    h2: bool,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    send_on(stream, addr, h2, method, path, headers, body).await
}

/// A connection to `addr` from the loopback address `src` (e.g. `[127, 0, 0, 2]`): another
/// client, as far as per-client limits go.
pub async fn connect_from(src: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// One request on `stream`, a connection to `addr`.
pub async fn send_on(
    stream: TcpStream,
    addr: SocketAddr,
    h2: bool,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Resp {
    let io = TokioIo::new(stream);
    let mut req = Request::builder().method(method).uri(path);
    if !h2 {
        req = req.header("host", addr.to_string());
    } else {
        req = req.uri(format!("http://{addr}{path}"));
    }
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp { status: parts.status, headers: parts.headers, body }
}
