//! Listener behaviour: a taken port, oversized headers, slow headers, graceful shutdown.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Fixture;

#[test]
fn a_taken_port_is_a_clear_error() {
    let fx = Fixture::new();
    let config = fwrepo_server::ServerConfig { listen: fx.addr, ..Default::default() };
    let err = match fx.rt.block_on(fwrepo_server::bind(config)) {
        Err(e) => e,
        Ok(_) => panic!("bound a taken port"),
    };
    assert!(matches!(err, fwrepo_server::Error::AddrInUse { .. }), "{err}");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[test]
fn oversized_headers_are_refused() {
    let fx = Fixture::new();
    let resp = fx.get("/healthz", &[("x-pad", "a".repeat(40_000))]);
    assert_eq!(resp.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[test]
fn slow_headers_are_cut_off() {
    let fx = Fixture::with_config(|c| c.header_read_timeout_s = 1);
    fx.rt.block_on(async {
        let mut s = TcpStream::connect(fx.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut buf = Vec::new();
        // The server gives up on the request and closes; we never finish it.
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection still open after the header timeout");
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("200 OK"), "{text}");
    });
}

#[test]
fn idle_connections_are_closed() {
    let fx = Fixture::with_config(|c| c.idle_timeout_s = 1);
    fx.rt.block_on(async {
        let mut s = TcpStream::connect(fx.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "keep-alive connection not closed when idle");
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200 OK"));
    });
}

#[test]
fn shutdown_lets_an_in_flight_download_finish() {
    let mut fx = Fixture::new();
    let t = crate::support::token("*");
    let url = fx.big.url();
    let addr = fx.addr;
    let (mut s, _first) = fx.rt.block_on(async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut first = [0u8; 64];
        s.read_exact(&mut first).await.unwrap();
        (s, first)
    });
    let done = fx.shutdown();
    fx.rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // New connections are refused once the listener is closed.
        assert!(TcpStream::connect(addr).await.is_err());
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.len() as u64 + 64 > fx.big.bytes.len() as u64, "download cut short: {} bytes", rest.len());
        let r = tokio::time::timeout(Duration::from_secs(10), done).await.unwrap().unwrap();
        assert!(r.is_ok());
    });
}

#[test]
fn shutdown_closes_an_idle_keep_alive_connection_at_once() {
    let mut fx = Fixture::new();
    let addr = fx.addr;
    // A connection that has had its answer and waits for its next request, as most do.
    let mut s = fx.rt.block_on(async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nok\n") {
            let mut b = [0u8; 256];
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before the answer: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
        assert!(!got.windows(17).any(|w| w.eq_ignore_ascii_case(b"connection: close")));
        s
    });
    let done = fx.shutdown();
    fx.rt.block_on(async {
        // Closed by the server without sending anything more, well before any idle timeout.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the idle connection was not closed on shutdown");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        let r = tokio::time::timeout(Duration::from_secs(5), done).await.unwrap().unwrap();
        assert!(r.is_ok());
    });
}
