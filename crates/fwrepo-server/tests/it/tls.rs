//! HTTPS: a self-signed certificate made per test, HTTP/1.1 and HTTP/2 chosen by ALPN, plain
//! clients and silent clients on the TLS port, and the errors for unusable certificate and key
//! files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::{Fixture, Resp, bearer, token};

/// A self-signed certificate for `localhost` and its key, as PEM files (key mode 600).
struct Certs {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn certs() -> Certs {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    write_private(&key, &made.signing_key.serialize_pem());
    Certs { der: made.cert.der().clone(), _dir: dir, cert, key }
}

fn tls_fixture(certs: &Certs, tweak: impl FnOnce(&mut fwrepo_server::ServerConfig)) -> Fixture {
    Fixture::with_config(|c| {
        c.tls_cert = Some(certs.cert.clone());
        c.tls_key = Some(certs.key.clone());
        tweak(c);
    })
}

/// A TLS connection trusting only `cert`, offering `alpn`.
async fn connect(addr: SocketAddr, cert: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// One GET over a fresh TLS connection; HTTP/2 when `h2`, else HTTP/1.1, as ALPN agrees.
async fn get_tls(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    h2: bool,
    path: &str,
    headers: &[(&str, String)],
) -> (Resp, Version) {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let stream = connect(addr, cert, &[alpn]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    let io = TokioIo::new(stream);
    let mut req = Request::builder().method(Method::GET);
    req = if h2 {
        req.uri(format!("https://localhost:{}{path}", addr.port()))
    } else {
        req.uri(path).header("host", format!("localhost:{}", addr.port()))
    };
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
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
    (Resp { status: parts.status, headers: parts.headers, body }, parts.version)
}

fn check_health_and_range(fx: &Fixture, certs: &Certs, h2: bool) {
    let (health, version) = fx.rt.block_on(get_tls(fx.addr, &certs.der, h2, "/healthz", &[]));
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(version, if h2 { Version::HTTP_2 } else { Version::HTTP_11 });

    let url = fx.big.url();
    let headers = [bearer(&token("*")), ("range", "bytes=1000-4999".to_owned())];
    let (part, _) = fx.rt.block_on(get_tls(fx.addr, &certs.der, h2, &url, &headers));
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("content-range").unwrap(), format!("bytes 1000-4999/{}", fx.big.bytes.len()));
    assert_eq!(part.body, fx.big.bytes.slice(1000..5000));

    // The gate is the same over TLS.
    let (denied, _) = fx.rt.block_on(get_tls(fx.addr, &certs.der, h2, &url, &[]));
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn http1_over_tls_serves_health_and_gated_ranges() {
    let certs = certs();
    let fx = tls_fixture(&certs, |_| {});
    check_health_and_range(&fx, &certs, false);
}

#[test]
fn alpn_h2_negotiates_http2() {
    let certs = certs();
    let fx = tls_fixture(&certs, |_| {});
    check_health_and_range(&fx, &certs, true);
}

#[test]
fn a_client_offering_both_gets_h2() {
    let certs = certs();
    let fx = tls_fixture(&certs, |_| {});
    let stream = fx.rt.block_on(connect(fx.addr, &certs.der, &[b"http/1.1", b"h2"]));
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_response() {
    let certs = certs();
    let fx = tls_fixture(&certs, |_| {});
    fx.rt.block_on(async {
        let mut s = TcpStream::connect(fx.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "plain connection to the TLS port left open");
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("HTTP/"), "{text}");
    });
}

#[test]
fn a_silent_client_is_cut_off_and_frees_its_slot() {
    let certs = certs();
    let fx = tls_fixture(&certs, |c| {
        c.header_read_timeout_s = 1;
        c.max_connections = 1;
    });
    fx.rt.block_on(async {
        // Connects, never starts the handshake, holds the only connection slot.
        let mut silent = TcpStream::connect(fx.addr).await.unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "silent TLS client not cut off after the header timeout");
        assert!(buf.is_empty() || !String::from_utf8_lossy(&buf).contains("HTTP/"));

        // The slot is free again.
        let served = tokio::time::timeout(Duration::from_secs(5), get_tls(fx.addr, &certs.der, false, "/healthz", &[]));
        let (resp, _) = served.await.expect("connection slot not given back");
        assert_eq!(resp.status, StatusCode::OK);
    });
}

/// `bind` with these TLS files; its error.
fn bind_error(cert: Option<&Path>, key: Option<&Path>) -> fwrepo_server::Error {
    let config = fwrepo_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: cert.map(Path::to_owned),
        tls_key: key.map(Path::to_owned),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    match rt.block_on(fwrepo_server::bind(config)) {
        Err(e) => e,
        Ok(_) => panic!("bound with unusable TLS files"),
    }
}

#[test]
fn unusable_certificate_and_key_files_are_clear_errors() {
    use fwrepo_server::Error;
    let certs = certs();
    let dir = certs.cert.parent().unwrap();

    let missing = dir.join("missing.pem");
    let e = bind_error(Some(&missing), Some(&certs.key));
    assert!(matches!(e, Error::TlsFile { .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = bind_error(Some(&certs.cert), Some(&missing));
    assert!(matches!(e, Error::TlsFile { .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    // A certificate file holding only a key.
    let e = bind_error(Some(&certs.key), Some(&certs.key));
    assert!(matches!(e, Error::TlsNoCertificate { .. }), "{e}");
    assert!(e.to_string().contains("no certificate"), "{e}");

    // A key file holding only a certificate.
    let cert_as_key = dir.join("cert-as-key.pem");
    write_private(&cert_as_key, &std::fs::read_to_string(&certs.cert).unwrap());
    let e = bind_error(Some(&certs.cert), Some(&cert_as_key));
    assert!(matches!(e, Error::TlsNoKey { .. }), "{e}");
    assert!(e.to_string().contains("no private key"), "{e}");

    // Another certificate's key.
    let other = certs_key_only(dir);
    let e = bind_error(Some(&certs.cert), Some(&other));
    assert!(matches!(e, Error::TlsKeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("does not fit"), "{e}");

    // Half a TLS configuration.
    let e = bind_error(Some(&certs.cert), None);
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(fwrepo_server::ServerConfig::from_toml("x.toml", "tls_key = \"k.pem\"").is_err());
}

fn certs_key_only(dir: &Path) -> PathBuf {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let path = dir.join("other-key.pem");
    write_private(&path, &made.signing_key.serialize_pem());
    path
}

#[test]
fn a_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let certs = certs();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = bind_error(Some(&certs.cert), Some(&certs.key));
        assert!(matches!(e, fwrepo_server::Error::TlsKeyPermissions { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains(&certs.key.display().to_string()), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
    }
    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o400)).unwrap();
    let config = fwrepo_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(certs.cert.clone()),
        tls_key: Some(certs.key.clone()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(rt.block_on(fwrepo_server::bind(config)).unwrap().is_tls());
}
