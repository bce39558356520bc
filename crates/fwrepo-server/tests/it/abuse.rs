//! Bounded abuse: slow request bodies, HTTP/2 connections kept open with PINGs and no request,
//! one client taking every connection slot, and token guessing. Each flood is bounded (a few
//! seconds) and runs on loopback against a server capped at eight connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::support::{DL380, Fixture, Resp, bearer, connect_from, send, send_on, token};

/// How long one probe may wait for its answer while a flood runs. Without the limits under
/// test, a probe waits for a slot that never frees.
const PROBE: Duration = Duration::from_secs(5);

/// What one flooding client did.
#[derive(Debug, Default)]
struct Flooded {
    connections: usize,
    /// Connections the server ended with a 408 (slow body) or a GOAWAY (idle HTTP/2).
    cut: usize,
}

/// `/healthz` and a ranged entitled download, over HTTP/1.1 and HTTP/2, each within [`PROBE`].
async fn probe(addr: SocketAddr, token: &str, blob_url: &str) {
    for h2 in [false, true] {
        let health = tokio::time::timeout(PROBE, send(addr, h2, Method::GET, "/healthz", &[], Bytes::new()))
            .await
            .unwrap_or_else(|_| panic!("/healthz starved by the flood (h2: {h2})"));
        assert_eq!(health.status, StatusCode::OK);
        let headers = [bearer(token), ("range", "bytes=0-99".to_owned())];
        let dl = tokio::time::timeout(PROBE, send(addr, h2, Method::GET, blob_url, &headers, Bytes::new()))
            .await
            .unwrap_or_else(|_| panic!("entitled download starved by the flood (h2: {h2})"));
        assert_eq!(dl.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(dl.body.len(), 100);
    }
}

/// How a flooding client misbehaves: what it sends on each new connection, what it sends
/// every 200 ms after that, and how it tells from what it received that the server cut it off.
struct Misbehaviour {
    hello: Vec<u8>,
    tick: Vec<u8>,
    cut: fn(&[u8]) -> bool,
}

/// Starts `POST /v1/tokens` with `Content-Length: 100000` and sends one byte every 200 ms;
/// cut off by a 408.
fn slow_body() -> Misbehaviour {
    let head = "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100000\r\n\r\n{";
    Misbehaviour { hello: head.as_bytes().to_vec(), tick: b" ".to_vec(), cut: |got| got.starts_with(b"HTTP/1.1 408") }
}

/// Opens HTTP/2 connections (prior knowledge) and sends only a PING every 200 ms, never a
/// request and never an answer to the server's PINGs; cut off by a GOAWAY.
fn idle_h2() -> Misbehaviour {
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(0x4, 0, &[])); // SETTINGS
    Misbehaviour { hello, tick: frame(0x6, 0, &[7; 8]), cut: |got| frame_types(got).contains(&GOAWAY) }
}

/// A client doing `how`, reconnecting whenever the server closes on it, until `stop` (or a
/// minute at most).
async fn flooding_client(addr: SocketAddr, stop: Arc<AtomicBool>, how: Arc<Misbehaviour>) -> Flooded {
    let mut done = Flooded::default();
    let bound = tokio::time::Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < bound {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        done.connections += 1;
        if s.write_all(&how.hello).await.is_err() {
            continue;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if s.write_all(&how.tick).await.is_err() {
                        break;
                    }
                }
            }
        }
        if (how.cut)(&got) {
            done.cut += 1;
        }
    }
    done
}

/// A server capped at eight connections with `config` applied, flooded by eight clients
/// doing `how` (the flood takes every slot first) while [`probe`]s run; then the flood stops.
/// What each flooding client did, with the fixture for its metrics.
fn flood(config: impl FnOnce(&mut fwrepo_server::ServerConfig), how: Misbehaviour) -> (Fixture, Vec<Flooded>) {
    const CLIENTS: usize = 8;
    let fx = Fixture::with_config(|c| {
        c.max_connections = CLIENTS;
        config(c);
    });
    let (addr, t, url) = (fx.addr, token(DL380), fx.big.url());
    let how = Arc::new(how);
    let flooded = fx.rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let mut flood = JoinSet::new();
        for _ in 0..CLIENTS {
            flood.spawn(flooding_client(addr, Arc::clone(&stop), Arc::clone(&how)));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        probe(addr, &t, &url).await;
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        while let Some(r) = flood.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    (fx, flooded)
}

/// An HTTP/2 frame header: length, type, flags, stream 0.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

const GOAWAY: u8 = 0x7;

/// The frame types in `buf` (server frames after our preface), as far as it holds whole frames.
fn frame_types(buf: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 9 {
        let len = (usize::from(buf[at]) << 16) | (usize::from(buf[at + 1]) << 8) | usize::from(buf[at + 2]);
        types.push(buf[at + 3]);
        at += 9 + len;
    }
    types
}

#[test]
fn slow_body_flood_does_not_starve_health() {
    let (fx, flooded) = flood(|c| c.body_read_timeout_s = 1, slow_body());
    // The flood really held the slots and was cut off by the body deadline, again and again.
    let cut: usize = flooded.iter().map(|f| f.cut).sum();
    let connections: usize = flooded.iter().map(|f| f.connections).sum();
    assert!(cut >= 8, "slow bodies answered 408: {flooded:?}");
    assert!(connections > 8, "flood reconnected: {flooded:?}");
    assert!(fx.metric("fwrepo_http_requests_total{route=\"tokens\",status=\"408\"}") >= 8);
}

/// A request body that never sends a byte and never ends.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[test]
fn slow_body_over_http2_gets_408() {
    let fx = Fixture::with_config(|c| c.body_read_timeout_s = 1);
    let addr = fx.addr;
    fx.rt.block_on(async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("http://{addr}/v1/tokens"))
            .header("content-type", "application/json")
            .body(Endless)
            .unwrap();
        let resp = tokio::time::timeout(PROBE, sender.send_request(req)).await.expect("no answer").unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    });
}

#[test]
fn idle_h2_connections_are_closed() {
    let (fx, flooded) = flood(|c| c.request_idle_timeout_s = 1, idle_h2());
    let cut: usize = flooded.iter().map(|f| f.cut).sum();
    assert!(cut >= 8, "idle HTTP/2 connections were sent a GOAWAY: {flooded:?}");
    assert!(fx.metric("fwrepo_connections_closed_no_request_total") >= 8);
}

#[test]
fn a_slow_reader_is_not_cut_by_the_no_request_timeout() {
    let fx = Fixture::with_config(|c| c.request_idle_timeout_s = 1);
    // Far more than the socket buffers hold: most of it waits in the response body.
    let huge = fx.add_blob(8 << 20);
    let (addr, t, url) = (fx.addr, token(DL380), huge.url());
    fx.rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let req = format!("GET {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        // Read slowly for well past the no-request timeout: the request is in progress ...
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048];
        let start = tokio::time::Instant::now();
        while start.elapsed() < Duration::from_millis(3000) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => panic!("stalled"),
            }
        }
        assert!(got.len() < 1 << 20, "read too fast to test anything: {}", got.len());
        // ... then the rest: nothing was cut.
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut got)).await.unwrap().unwrap();
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(got.len() - head_end, huge.bytes.len(), "response cut short");
        assert!(got[head_end..] == huge.bytes[..], "response bytes differ");
    });
}

#[test]
fn one_client_cannot_hold_every_connection_slot() {
    let fx = Fixture::with_config(|c| {
        c.max_connections = 16;
        c.max_connections_per_ip = 4;
    });
    let addr = fx.addr;
    let mut held: Vec<TcpStream> =
        fx.rt.block_on(async { futures_join(4, || connect_from([127, 0, 0, 1], addr)).await });
    fx.rt.block_on(async {
        // The four are accepted (the server is still answering on them) ...
        tokio::time::sleep(Duration::from_millis(200)).await;
        // ... and a fifth from the same client is closed without an answer.
        let mut fifth = connect_from([127, 0, 0, 1], addr).await;
        let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = [0u8; 256];
        let r = tokio::time::timeout(Duration::from_secs(3), fifth.read(&mut buf))
            .await
            .expect("a fifth connection from one client was left open");
        assert!(matches!(r, Ok(0) | Err(_)), "served past the per-client cap: {:?}", String::from_utf8_lossy(&buf));
        // Another client is served meanwhile.
        let other = connect_from([127, 0, 0, 2], addr).await;
        let resp: Resp = send_on(other, addr, false, Method::GET, "/healthz", &[], Bytes::new()).await;
        assert_eq!(resp.status, StatusCode::OK);
    });
    // A closed connection gives its slot back.
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fx.metric("fwrepo_connections_refused_total{reason=\"per_ip\"}"), 1);
    drop(held);
}

/// `n` results of `f`, one after the other.
async fn futures_join<T, Fut: std::future::Future<Output = T>>(n: usize, f: impl Fn() -> Fut) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(f().await);
    }
    out
}

#[test]
fn serial_guessing_is_rate_limited() {
    let fx = Fixture::with_config(|c| {
        c.tokens.per_client_per_minute = 1;
        c.tokens.per_client_burst = 5;
    });
    let mut statuses = Vec::new();
    for i in 0..40 {
        let r = fx.post("/v1/tokens", &format!(r#"{{"serial":"GUESS{i:04}"}}"#));
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"], "rate_limited");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(&statuses[..5], &[403; 5], "the burst is answered");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    // The right serial does not help once the client is limited ...
    assert_eq!(fx.post("/v1/tokens", r#"{"serial":"S1"}"#).status, StatusCode::TOO_MANY_REQUESTS);
    // ... while another client is served.
    assert_eq!(fx.post_from([127, 0, 0, 2], "/v1/tokens", r#"{"serial":"S1"}"#).status, StatusCode::OK);
    assert_eq!(fx.metric("fwrepo_token_requests_rate_limited_total{limit=\"client\"}"), 36);
    assert_eq!(fx.metric("fwrepo_http_requests_total{route=\"tokens\",status=\"429\"}"), 36);
    // Refusals are audited, boundedly: one record for the client's burst of refusals.
    let refused: Vec<_> = fx.audit_lines().into_iter().filter(|l| l["status"] == 429).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["client"], "127.0.0.1");
    assert_eq!(refused[0]["path"], "/v1/tokens");
    assert_eq!(refused[0]["reason"], "rate limit: client");
}

#[test]
fn one_serial_from_many_clients_is_rate_limited() {
    let fx = Fixture::with_config(|c| {
        c.tokens.per_credential_per_minute = 1;
        c.tokens.per_credential_burst = 3;
    });
    let statuses: Vec<u16> = (2..8u8)
        .map(|host| fx.post_from([127, 0, 0, host], "/v1/tokens", r#"{"serial":"S1"}"#).status.as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(fx.metric("fwrepo_token_requests_rate_limited_total{limit=\"credential\"}"), 3);
    // Another serial is not affected.
    assert_eq!(fx.post("/v1/tokens", r#"{"serial":"S9"}"#).status, StatusCode::FORBIDDEN);
}

/// Agreement `SA-1` covers serial S1; `SA-2` (suspended) covers S1 too.
fn agreements(fx: &Fixture) {
    let json = r#"{"agreements":[
        {"agreement":"SA-1","serials":["S1"],"start":"2020-01-01","end":"2099-12-31","status":"active"},
        {"agreement":"SA-2","serials":["S1"],"start":"2020-01-01","end":"2099-12-31","status":"suspended"}
    ]}"#;
    fx.records().import("agreements.json", json.as_bytes(), fwrepo_entitle::UnixTime::now()).unwrap();
}

#[test]
fn a_serial_alone_is_refused_when_agreement_and_serial_are_required() {
    let fx = Fixture::with_config(|c| c.tokens.require = fwrepo_server::TokenRequire::SerialAndAgreement);
    agreements(&fx);
    for alone in [r#"{"serial":"S1"}"#, r#"{"agreement":"SA-1"}"#] {
        let r = fx.post("/v1/tokens", alone);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{alone}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["reason"].as_str().unwrap().contains("together"), "{v}");
    }
    let ok = fx.post("/v1/tokens", r#"{"agreement":"SA-1","serial":"S1"}"#);
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let reply: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(reply["subject"], "agreement:SA-1");
    let dl = fx.get(&fx.big.url(), &[bearer(reply["token"].as_str().unwrap())]);
    assert_eq!(dl.status, StatusCode::OK);
    // A serial the agreement does not cover, an inactive agreement, an unknown one: one answer.
    let unknown = fx.post("/v1/tokens", r#"{"agreement":"NOPE","serial":"S1"}"#);
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    for body in [r#"{"agreement":"SA-1","serial":"S9"}"#, r#"{"agreement":"SA-2","serial":"S1"}"#] {
        let r = fx.post("/v1/tokens", body);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(r.body, unknown.body, "{body}");
    }
    // A revoked serial cannot vouch for the agreement.
    fx.records().revoke_subject(&"serial:S1".parse().unwrap(), fwrepo_entitle::UnixTime::now()).unwrap();
    assert_eq!(fx.post("/v1/tokens", r#"{"agreement":"SA-1","serial":"S1"}"#).status, StatusCode::FORBIDDEN);
}

#[test]
fn agreement_and_serial_together_work_by_default_too() {
    let fx = Fixture::new();
    agreements(&fx);
    assert_eq!(fx.post("/v1/tokens", r#"{"serial":"S1"}"#).status, StatusCode::OK);
    assert_eq!(fx.post("/v1/tokens", r#"{"agreement":"SA-1","serial":"S1"}"#).status, StatusCode::OK);
    assert_eq!(fx.post("/v1/tokens", r#"{"agreement":"SA-1","serial":"S9"}"#).status, StatusCode::FORBIDDEN);
}
