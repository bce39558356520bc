//! The engine over real HTTP: reqwest against a small hyper server on 127.0.0.1:0 that serves
//! the in-memory peer's files with single ranges, ETags and a bearer-token gate.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use fwrepo_fetch::{Error, Fetcher, HttpOptions, HttpTransport, MemoryTransport, Transport};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::{MemSink, MemStore, Origin, data, edited, quick, remote_blobs, seed_of};

struct Server {
    files: MemoryTransport,
    /// Blob answers to cut short (a Content-Length the body does not reach).
    cut: AtomicU32,
    connections: AtomicU32,
    http2_requests: AtomicU32,
}

fn handle(s: &Server, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.version() == hyper::Version::HTTP_2 {
        s.http2_requests.fetch_add(1, Ordering::SeqCst);
    }
    let path = req.uri().path();
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    if path.starts_with("/v1/blobs/") {
        let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if auth != Some("Bearer tok") {
            return reply(StatusCode::UNAUTHORIZED, Bytes::from_static(b"{\"error\":\"unauthorized\"}"));
        }
    }
    let Some(file) = s.files.file(path) else { return reply(StatusCode::NOT_FOUND, Bytes::new()) };
    let etag = format!("\"{}\"", fwrepo_chunk::Digest::of(&file));
    if req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return reply(StatusCode::NOT_MODIFIED, Bytes::new());
    }
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
    });
    let len = file.len();
    let mut resp = match range {
        Some((a, b)) if a <= b && b < len => {
            let mut r = reply(StatusCode::PARTIAL_CONTENT, file.slice(a..=b));
            r.headers_mut().insert(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}").parse().unwrap());
            r
        }
        _ => reply(StatusCode::OK, file),
    };
    resp.headers_mut().insert(header::ETAG, etag.parse().unwrap());
    if path.starts_with("/v1/blobs/") && !path.ends_with("/chunks") && s.cut.load(Ordering::SeqCst) > 0 {
        s.cut.fetch_sub(1, Ordering::SeqCst);
        let short = resp.body().clone();
        let n = http_body::Body::size_hint(&short).exact().unwrap_or(0);
        resp.headers_mut().insert(header::CONTENT_LENGTH, (n + 1000).into());
    }
    resp
}

async fn serve(files: MemoryTransport, cut: u32) -> (SocketAddr, Arc<Server>) {
    serve_with(files, cut, None).await
}

async fn serve_with(
    files: MemoryTransport,
    cut: u32,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<Server>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server {
        files,
        cut: AtomicU32::new(cut),
        connections: AtomicU32::new(0),
        http2_requests: AtomicU32::new(0),
    });
    let s = Arc::clone(&server);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = Arc::clone(&s);
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let r = handle(&s, &req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => conn.serve_connection(TokioIo::new(stream), svc).await,
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        conn.serve_connection(TokioIo::new(stream), svc).await
                    }
                };
            });
        }
    });
    (addr, server)
}

fn fixture() -> (Origin, Vec<u8>, Vec<u8>, fwrepo_tuf::TargetPath) {
    let mut o = Origin::new();
    let v1 = data(1, 300_000);
    let v2 = edited(&v1);
    o.publish("fw/a-1.bin", &v1);
    let p = o.publish("fw/a-2.bin", &v2);
    (o, v1, v2, p)
}

fn http_fetcher(addr: SocketAddr) -> Fetcher<HttpTransport> {
    let t = HttpTransport::new(&format!("http://{addr}"), &HttpOptions::default()).unwrap();
    Fetcher::new(t, quick())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_and_delta_fetch_over_http_verify_and_count_the_wire() {
    let (o, v1, v2, p) = fixture();
    let (addr, _server) = serve(o.peer.clone(), 0).await;
    let f = http_fetcher(addr);
    f.set_bearer(Some("tok"));
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
    assert!(report.chunks_fetched > 0 && report.requests > 0 && !report.ranges_ignored);
    let wire = f.transport().wire().stats();
    assert!(wire.head_bytes > 100 * wire.requests, "{wire:?}");
    assert!(wire.body_bytes >= report.body_bytes + blobs[0].index.to_bytes().len() as u64);
    assert!(report.body_bytes < v2.len() as u64 / 2, "only the changed part crossed the wire: {report:?}");
    // A second refresh of an unchanged repository is cheap over HTTP too.
    let before = f.transport().wire().stats();
    let r = f.refresh(&o.root_v1, &store, crate::support::t0(), Default::default()).await.unwrap();
    assert!(r.timestamp_unchanged);
    assert!(f.transport().wire().stats().wire_bytes() - before.wire_bytes() < 2048);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_the_server_is_retried_over_http() {
    let (o, v1, v2, p) = fixture();
    let (addr, server) = serve(o.peer.clone(), 1).await;
    let f = http_fetcher(addr);
    f.set_bearer(Some("tok"));
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert_eq!(server.cut.load(Ordering::SeqCst), 0, "the fault was used");
    assert!(report.retries >= 1, "{report:?}");
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_over_http_is_a_status_error_without_retry() {
    let (o, _, _, p) = fixture();
    let (addr, _server) = serve(o.peer.clone(), 0).await;
    let f = http_fetcher(addr);
    let store = MemStore::default();
    let mut r = f.refresh(&o.root_v1, &store, crate::support::t0(), Default::default()).await.unwrap();
    let info = f.find_target(&mut r.updater, &p, &store).await.unwrap().unwrap();
    let before = f.transport().wire().stats().requests;
    let err = f.remote_blob(&info).await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err}");
    assert_eq!(f.transport().wire().stats().requests - before, 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let f = http_fetcher(addr);
    let err = f.get_bounded("/metadata/timestamp.json", 100, false).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert_eq!(f.retries(), 2, "transport errors are retried up to the policy");
}

#[test]
fn a_bad_ca_file_or_base_url_is_refused() {
    let opts = HttpOptions { ca_pem: Some(b"not a certificate".to_vec()), ..HttpOptions::default() };
    assert!(matches!(HttpTransport::new("https://127.0.0.1:1", &opts), Err(Error::Client { .. })));
    for bad in ["ftp://x", "http://x/?q=1", "not a url"] {
        assert!(matches!(HttpTransport::new(bad, &HttpOptions::default()), Err(Error::Client { .. })), "{bad}");
    }
}

/// A server certificate for `localhost` from a private CA, and the acceptor that serves it.
fn private_ca() -> (Vec<u8>, tokio_rustls::TlsAcceptor) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(made.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (made.cert.pem().into_bytes(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_uses_http2_over_one_connection() {
    let (o, v1, v2, p) = fixture();
    let (pem, acceptor) = private_ca();
    let (addr, server) = serve_with(o.peer.clone(), 0, Some(acceptor)).await;
    let base = format!("https://localhost:{}", addr.port());
    let opts = HttpOptions { ca_pem: Some(pem), ca_only: true, ..HttpOptions::default() };
    let f = Fetcher::new(HttpTransport::new(&base, &opts).unwrap(), quick());
    f.set_bearer(Some("tok"));
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
    let requests = f.transport().wire().stats().requests as u32;
    assert_eq!(server.http2_requests.load(Ordering::SeqCst), requests, "every request over HTTP/2");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "one connection, reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_outside_the_trusted_ca_is_refused() {
    let (o, _, _, _) = fixture();
    let (_, acceptor) = private_ca();
    let (other_pem, _) = private_ca();
    let (addr, _server) = serve_with(o.peer.clone(), 0, Some(acceptor)).await;
    let base = format!("https://localhost:{}", addr.port());
    let opts = HttpOptions { ca_pem: Some(other_pem), ca_only: true, ..HttpOptions::default() };
    let f = Fetcher::new(HttpTransport::new(&base, &opts).unwrap(), quick());
    let err = f.get_bounded("/metadata/timestamp.json", 100_000, false).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

/// The mirror runs its sync on a spawned task: the engine's futures must be `Send`.
#[tokio::test]
async fn engine_futures_can_be_spawned() {
    let (o, _, _, p) = fixture();
    let (addr, _server) = serve(o.peer.clone(), 0).await;
    let f = Arc::new(http_fetcher(addr));
    f.set_bearer(Some("tok"));
    let root = o.root_v1.clone();
    let task = tokio::spawn(async move {
        let store = MemStore::default();
        let blobs = remote_blobs(&*f, &root, &store, &[&p]).await;
        let sink = MemSink::default();
        f.fetch_chunks(&blobs, |_| false, &sink).await.map(|r| r.chunks_fetched)
    });
    assert!(task.await.unwrap().unwrap() > 0);
}
