//! The plain HTTP/1.1 path (`sendfile` from the pack files) against hyper's: byte-identical
//! exchanges, keep-alive, handing a connection over to hyper, and clients that stall or leave.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Blob, DL380, Fixture, token, verifier};

/// Packs of 1 MiB, so the 3 MiB blob added below spans several.
const PACK: u64 = 1 << 20;
const SPANNING: usize = 3 << 20;

/// One raw request; the whole raw response (head and body) read until the connection closes.
async fn exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await.expect("no answer").unwrap();
    got
}

/// The response without its `date` field, which differs between any two answers.
fn without_date(raw: &[u8]) -> Vec<u8> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head") + 4;
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut out: Vec<u8> = head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date: "))
        .collect::<String>()
        .into();
    out.extend_from_slice(&raw[end..]);
    out
}

/// Splits one response off the front of `buf` by its `content-length`; `None` until complete.
fn take_response(buf: &mut Vec<u8>, head_request: bool) -> Option<(String, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let len = if head_request { 0 } else { len };
    if buf.len() < end + len {
        return None;
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Some((head, body))
}

/// Every request a download client makes, on one fixture with `sendfile` and one without:
/// the same bytes come back (the `date` field aside).
#[test]
fn sendfile_and_hyper_answer_byte_identical_responses() {
    let ours = Fixture::with_packs(PACK, |_| {});
    let hyper = Fixture::with_packs(PACK, |c| c.sendfile = false);
    let spanning = ours.add_blob(SPANNING);
    assert_eq!(hyper.add_blob(SPANNING).id, spanning.id, "the fixtures hold the same blobs");
    assert!(
        ours.state.store().read_extents(&spanning.id, 0..SPANNING as u64).unwrap().len() > 1,
        "the blob is in more than one extent"
    );
    let t = token(DL380);
    let (big, other, empty) = (ours.big.url(), ours.other.url(), ours.empty.url());
    let span = spanning.url();
    let cases: Vec<(String, String, String)> = vec![
        ("GET".into(), big.clone(), String::new()),
        ("HEAD".into(), big.clone(), String::new()),
        ("GET".into(), big.clone(), "range: bytes=0-8191\r\n".into()),
        ("GET".into(), big.clone(), "range: bytes=1234-70000\r\n".into()),
        ("GET".into(), big.clone(), "range: bytes=-500\r\n".into()),
        ("GET".into(), big.clone(), "range: bytes=299000-\r\n".into()),
        ("HEAD".into(), big.clone(), "range: bytes=10-20\r\n".into()),
        ("GET".into(), big.clone(), "range: bytes=0-9,100-199\r\n".into()),
        ("GET".into(), big.clone(), "range: bytes=999999-\r\n".into()),
        ("GET".into(), big.clone(), "if-match: \"nope\"\r\n".into()),
        ("GET".into(), big.clone(), format!("if-none-match: {}\r\n", ours.big.etag())),
        ("GET".into(), big.clone(), "if-range: \"old\"\r\nrange: bytes=0-9\r\n".into()),
        ("GET".into(), empty, String::new()),
        ("GET".into(), other, String::new()),
        ("GET".into(), span.clone(), String::new()),
        ("GET".into(), span.clone(), format!("range: bytes={}-{}\r\n", PACK - 1000, 2 * PACK + 5000)),
        ("GET".into(), format!("{}/chunks", big), String::new()),
        ("GET".into(), ours.big.hashed_target(), "range: bytes=5-50\r\n".into()),
        ("GET".into(), "/metadata/timestamp.json".into(), String::new()),
        ("GET".into(), "/no/such/route".into(), String::new()),
    ];
    ours.rt.block_on(async {
        for (method, path, extra) in &cases {
            for auth in [format!("authorization: Bearer {t}\r\n"), String::new()] {
                let req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}{extra}connection: close\r\n\r\n");
                let a = without_date(&exchange(ours.addr, &req).await);
                let b = without_date(&exchange(hyper.addr, &req).await);
                assert!(
                    a == b,
                    "{method} {path} {extra:?} auth={}:\nsendfile: {}\nhyper:    {}",
                    !auth.is_empty(),
                    String::from_utf8_lossy(&a[..a.len().min(600)]),
                    String::from_utf8_lossy(&b[..b.len().min(600)]),
                );
            }
        }
    });
    // And the bytes are the blob's.
    let raw = ours.rt.block_on(exchange(
        ours.addr,
        &format!("GET {span} HTTP/1.1\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n"),
    ));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw[end..] == spanning.bytes[..], "whole spanning blob differs");
}

/// Many requests, pipelined and one after another, on one connection; then a POST on the same
/// connection, which hyper takes over with the bytes already read.
#[test]
fn keep_alive_serves_many_requests_then_hands_over_to_hyper() {
    let fx = Fixture::new();
    let t = token(DL380);
    let big = fx.big.clone();
    fx.rt.block_on(async {
        let mut s = TcpStream::connect(fx.addr).await.unwrap();
        let mut buf = Vec::new();
        let mut answered = 0usize;
        for round in 0..20 {
            // Ten at once, pipelined.
            let mut batch = String::new();
            for i in 0..10 {
                let start = (round * 10 + i) * 1000;
                batch.push_str(&format!(
                    "GET {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\nrange: bytes={start}-{}\r\n\r\n",
                    big.url(),
                    start + 4999
                ));
            }
            s.write_all(batch.as_bytes()).await.unwrap();
            for got in 0..10 {
                let what = format!("request {} (after {answered} responses)", round * 10 + got);
                let (head, body) = next_response(&mut s, &mut buf, Duration::from_secs(10), &what).await;
                let start = (round * 10 + got) * 1000;
                assert!(head.starts_with("HTTP/1.1 206"), "{head}");
                assert!(body[..] == big.bytes[start..start + 5000], "request {} differs", round * 10 + got);
                answered += 1;
            }
        }
        assert_eq!(answered, 200);
        let plan = r#"{"model":"ProLiant DL380 Gen9"}"#;
        let req = format!(
            "POST /v1/catalog/plan HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{plan}GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            plan.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut heads = Vec::new();
        for i in 0..2 {
            let what = format!("response {i} after the POST ({heads:?})");
            heads.push(next_response(&mut s, &mut buf, Duration::from_secs(10), &what).await.0);
        }
        assert!(heads[0].starts_with("HTTP/1.1 200"), "{}", heads[0]);
        assert!(heads[1].starts_with("HTTP/1.1 200"), "{}", heads[1]);
    });
}

/// Requests `blob` on a connection with a tiny receive buffer and does not read.
async fn stalled(addr: SocketAddr, blob: &Blob, t: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!("GET {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\n\r\n", blob.url());
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Clients that stop reading park their connections, not the runtime's threads: with more of
/// them than the fixture has worker threads, other clients are still served at once, and
/// each stalled one is cut once the socket took no byte for the idle timeout.
#[test]
fn a_stalled_reader_blocks_no_thread_and_is_cut_after_the_idle_timeout() {
    let fx = Fixture::with_config(|c| c.idle_timeout_s = 1);
    let huge = fx.add_blob(8 << 20);
    let t = token(DL380);
    fx.rt.block_on(async {
        let mut stuck = Vec::new();
        for _ in 0..4 {
            stuck.push(stalled(fx.addr, &huge, &t).await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let health = tokio::time::timeout(
            Duration::from_secs(2),
            exchange(fx.addr, "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await
        .expect("a stalled reader held up another client");
        assert!(health.starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        for mut s in stuck {
            let mut got = Vec::new();
            // Whatever was in flight, then the end: an EOF or a reset, well short of the blob.
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await.expect("never cut");
            assert!(got.len() < huge.bytes.len(), "a stalled reader got the whole blob");
        }
    });
    let cut: Vec<_> = fx.audit_lines().into_iter().filter(|l| l["blob"] == huge.id.to_hex()).collect();
    assert_eq!(cut.len(), 4, "{cut:?}");
    for l in cut {
        assert!(l["bytes"].as_u64().unwrap() < huge.bytes.len() as u64, "{l}");
    }
}

/// A client that closes in the middle of a body: the server stops, audits the bytes it handed
/// over, and goes on serving.
#[test]
fn a_client_closing_mid_body_is_audited_with_the_bytes_sent() {
    let fx = Fixture::new();
    let huge = fx.add_blob(8 << 20);
    let t = token(DL380);
    fx.rt.block_on(async {
        let mut s = stalled(fx.addr, &huge, &t).await;
        let mut buf = vec![0u8; 100_000];
        let mut got = 0;
        while got < 50_000 {
            got += s.read(&mut buf).await.unwrap();
        }
        drop(s);
    });
    let start = std::time::Instant::now();
    let line = loop {
        if let Some(l) = fx.audit_lines().into_iter().find(|l| l["blob"] == huge.id.to_hex()) {
            break l;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no audit record for the cut download");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(line["status"], 200);
    let bytes = line["bytes"].as_u64().unwrap();
    assert!(bytes >= 50_000 && bytes < huge.bytes.len() as u64, "{line}");
    let ok = fx.get(&fx.big.url(), &[crate::support::bearer(&t)]);
    assert!(ok.body == fx.big.bytes);
}

/// One range request for `url` on `s`; the head of its response.
async fn ask_range(s: &mut TcpStream, buf: &mut Vec<u8>, url: &str, t: &str) -> String {
    let req = format!("GET {url} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\nrange: bytes=0-99\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    next_response(s, buf, Duration::from_secs(10), "the range request").await.0
}

/// A token revoked while its connection stays open is refused on that connection's next
/// request: the verified-token cache skips only the signature, never the revocation check,
/// on both the `sendfile` path and hyper's.
#[test]
fn a_token_revoked_mid_connection_is_refused_on_its_next_request() {
    for sendfile in [true, false] {
        let fx = Fixture::with_config(|c| c.sendfile = sendfile);
        let t = token(DL380);
        let url = fx.big.url();
        fx.rt.block_on(async {
            let mut s = TcpStream::connect(fx.addr).await.unwrap();
            let mut buf = Vec::new();
            for _ in 0..3 {
                let head = ask_range(&mut s, &mut buf, &url, &t).await;
                assert!(head.starts_with("HTTP/1.1 206"), "sendfile={sendfile}: {head}");
            }
            // What a refresh round does once the revocation is visible: a new verifier.
            let mut revoked = fwrepo_entitle::Revocations::new();
            revoked.revoke_subject("serial:S1".parse().unwrap(), fwrepo_entitle::UnixTime::now());
            fx.state.set_verifier(verifier(revoked));
            let head = ask_range(&mut s, &mut buf, &url, &t).await;
            assert!(head.starts_with("HTTP/1.1 401"), "sendfile={sendfile}: revoked token served: {head}");
        });
    }
}

/// The plain path reads a request head in as few `recv`s as it can and treats a read that
/// leaves room in its buffer as having emptied the socket: nothing may then be missed. Heads
/// that arrive in pieces with pauses between them, a request that comes a while after the
/// last response, and a head larger than one read's room sent in one write (the read that
/// fills the room must not be taken for an empty socket) are all answered.
#[test]
fn heads_in_pieces_late_requests_and_heads_larger_than_a_read_are_all_answered() {
    let fx = Fixture::new();
    let t = token(DL380);
    let big = fx.big.clone();
    fx.rt.block_on(async {
        let mut s = TcpStream::connect(fx.addr).await.unwrap();
        let mut buf = Vec::new();
        let pause = Duration::from_millis(30);
        for (round, pad) in [0usize, 6000, 0, 9000, 0].into_iter().enumerate() {
            let start = round * 1000;
            let req = format!(
                "GET {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\nx-pad: {}\r\nrange: bytes={start}-{}\r\n\r\n",
                big.url(),
                "p".repeat(pad),
                start + 4999
            );
            if pad == 0 {
                // In three pieces, each after a pause, then the next request after another.
                let cut = [req.len() / 3, 2 * req.len() / 3];
                for piece in [&req[..cut[0]], &req[cut[0]..cut[1]], &req[cut[1]..]] {
                    s.write_all(piece.as_bytes()).await.unwrap();
                    tokio::time::sleep(pause).await;
                }
            } else {
                s.write_all(req.as_bytes()).await.unwrap();
            }
            let what = format!("request {round} (pad {pad})");
            let (head, body) = next_response(&mut s, &mut buf, Duration::from_secs(5), &what).await;
            assert!(head.starts_with("HTTP/1.1 206"), "{head}");
            assert!(body[..] == big.bytes[start..start + 5000], "request {round} differs");
            tokio::time::sleep(pause).await;
        }
    });
}

/// Reads from `s` into `buf` until one whole response is there, and returns it; each read
/// may take at most `wait`.
async fn next_response(s: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration, what: &str) -> (String, Vec<u8>) {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        if let Some(r) = take_response(buf, false) {
            return r;
        }
        let n = tokio::time::timeout(wait, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what} not answered"))
            .unwrap();
        assert!(n > 0, "closed before answering {what}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An idle connection holds no buffers: the next request on a thread reuses the ones the last
/// request gave back, while a connection whose head is still arriving keeps its own. Heads
/// sent in halves on some connections, with whole requests (one of them with a head larger
/// than a read, which grows its buffer) on the others in between: every answer is the right
/// bytes for its own request.
#[test]
fn connections_between_requests_share_buffers_without_mixing_bytes() {
    let fx = Fixture::new();
    let t = token(DL380);
    let big = fx.big.clone();
    fx.rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..6 {
            conns.push((TcpStream::connect(fx.addr).await.unwrap(), Vec::new()));
        }
        for round in 0..8usize {
            let reqs: Vec<(usize, String)> = (0..conns.len())
                .map(|c| {
                    let start = (round * conns.len() + c) * 777;
                    let pad = if c == 3 && round % 2 == 1 { 12_000 } else { c * 10 };
                    let req = format!(
                        "GET {} HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\nauthorization: Bearer {t}\r\nrange: bytes={start}-{}\r\n\r\n",
                        big.url(),
                        "p".repeat(pad),
                        start + 2999
                    );
                    (start, req)
                })
                .collect();
            // The even connections send their first halves and wait; the odd ones are served.
            for (c, (s, _)) in conns.iter_mut().enumerate().filter(|(c, _)| c % 2 == 0) {
                let req = &reqs[c].1;
                s.write_all(&req.as_bytes()[..req.len() / 2]).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Then each odd connection's whole request, then the even ones' second halves.
            let odd = (1..conns.len()).step_by(2).map(|c| (c, reqs[c].1.as_bytes()));
            let even = (0..conns.len()).step_by(2).map(|c| (c, &reqs[c].1.as_bytes()[reqs[c].1.len() / 2..]));
            for (c, bytes) in odd.chain(even) {
                let (s, buf) = &mut conns[c];
                s.write_all(bytes).await.unwrap();
                let what = format!("round {round}, connection {c}");
                let (head, body) = next_response(s, buf, Duration::from_secs(5), &what).await;
                let start = reqs[c].0;
                assert!(head.starts_with("HTTP/1.1 206"), "{head}");
                assert!(body[..] == big.bytes[start..start + 3000], "{what} differs");
            }
        }
    });
}
