//! `fwrepo serve` as an operator runs it: a child process on 127.0.0.1:0 beside the CLI writer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{assert_one_line_error, bin, fwrepo};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &str, keys: &str) -> Server {
    let mut child = Command::new(bin())
        .args(["serve", "--data", data, "--keys", keys, "--listen", "127.0.0.1:0", "--refresh-secs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("://").next().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line:?}");
    Server { child, addr }
}

/// One HTTP/1.1 exchange: (status, headers lower-cased, body).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

pub(crate) fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A signed repository with one synthetic release whose components apply to `model`.
fn repository(dir: &Path) -> (String, String, fwrepo_synth::Release) {
    let data = dir.join("data").display().to_string();
    let keys = dir.join("keys").display().to_string();
    assert!(fwrepo(&["keys", "generate", "--out", &keys]).status.success());
    assert!(fwrepo(&["keys", "rotate-issuer", "--keys", &keys]).status.success());
    assert!(fwrepo(&["init", "--data", &data, "--keys", &keys]).status.success());
    let release = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).next().unwrap();
    let rdir = dir.join("release");
    release.write_to(&rdir).unwrap();
    let out = fwrepo(&["publish", "--data", &data, "--keys", &keys, rdir.join("release.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = &release.components[0].models[0];
    let serials = dir.join("serials.csv");
    std::fs::write(
        &serials,
        format!("serial,model,warranty_end\nSRV0000001,{model},2099-12-31\nSRV0000OLD,{model},2001-01-01\n"),
    )
    .unwrap();
    assert!(fwrepo(&["entitlements", "import", "--data", &data, serials.to_str().unwrap()]).status.success());
    (data, keys, release)
}

#[test]
fn serve_gates_downloads_and_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, release) = repository(dir.path());
    let server = start(&data, &keys);
    let addr = server.addr.as_str();

    // Public metadata needs no token.
    let (status, _, body) = http(addr, "GET", "/metadata/timestamp.json", &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"timestamp\""));

    let comp = &release.components[0];
    let blob = blake3::hash(&comp.data).to_hex().to_string();
    let path = format!("/v1/blobs/{blob}");
    let (status, h, _) = http(addr, "GET", &path, &[], b"");
    assert_eq!(status, 401);
    assert!(header(&h, "www-authenticate").is_some_and(|v| v.contains("invalid_token")));

    // An expired warranty gets no token; an in-warranty serial does.
    let (status, _, _) =
        http(addr, "POST", "/v1/tokens", &[("Content-Type", "application/json")], br#"{"serial":"SRV0000OLD"}"#);
    assert_eq!(status, 403);
    let (status, _, body) =
        http(addr, "POST", "/v1/tokens", &[("Content-Type", "application/json")], br#"{"serial":"SRV0000001"}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!("Bearer {}", v["token"].as_str().unwrap());

    let (status, h, body) = http(addr, "GET", &path, &[("Authorization", &bearer), ("Range", "bytes=100-1099")], b"");
    assert_eq!(status, 206);
    assert_eq!(body, &comp.data[100..1100]);
    assert_eq!(header(&h, "content-range"), Some(format!("bytes 100-1099/{}", comp.data.len()).as_str()));
    let (status, _, whole) = http(addr, "GET", &path, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200);
    assert_eq!(whole, comp.data);

    // A release published while the server runs is served after its next refresh.
    let next = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).nth(1).unwrap();
    let changed = next
        .components
        .iter()
        .find(|c| c.data != comp.data && c.models.contains(&comp.models[0]))
        .expect("the seeded series changes a component for this model");
    {
        let rdir = dir.path().join("release2");
        next.write_to(&rdir).unwrap();
        let out = fwrepo(&["publish", "--data", &data, "--keys", &keys, rdir.join("release.toml").to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let new_path = format!("/v1/blobs/{}", blake3::hash(&changed.data).to_hex());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, _, body) = http(addr, "GET", &new_path, &[("Authorization", &bearer)], b"");
            if status == 200 {
                assert_eq!(body, changed.data);
                break;
            }
            assert!(Instant::now() < deadline, "new release not served after 15 s (last status {status})");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // A second server on the same port gets a clear error.
    let taken = fwrepo(&["serve", "--data", &data, "--keys", &keys, "--listen", addr]);
    assert_one_line_error(&taken, "in use");

    // SIGTERM ends the server cleanly.
    let mut server = server;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

fn post_serial(addr: &str, serial: &str) -> (u16, Vec<u8>) {
    let body = format!(r#"{{"serial":"{serial}"}}"#);
    let (status, _, body) = http(addr, "POST", "/v1/tokens", &[("Content-Type", "application/json")], body.as_bytes());
    (status, body)
}

/// Polls `GET path` with `bearer` until it answers `want`, for at most 15 s.
fn await_status(addr: &str, path: &str, bearer: &str, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = http(addr, "GET", path, &[("Authorization", bearer)], b"");
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {status} after 15 s, expected {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn server_started_before_first_import_sees_revocations() {
    // The order an operator goes in: keys, init, publish, start the server, and only then the
    // first entitlement import, token and revocations.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let keys = dir.path().join("keys").display().to_string();
    assert!(fwrepo(&["keys", "generate", "--out", &keys]).status.success());
    assert!(fwrepo(&["keys", "rotate-issuer", "--keys", &keys]).status.success());
    assert!(fwrepo(&["init", "--data", &data, "--keys", &keys]).status.success());
    let release = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).next().unwrap();
    let rdir = dir.path().join("release");
    release.write_to(&rdir).unwrap();
    let out = fwrepo(&["publish", "--data", &data, "--keys", &keys, rdir.join("release.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = start(&data, &keys);
    let addr = server.addr.as_str();
    assert_eq!(post_serial(addr, "SRV0000001").0, 403, "no records yet");

    let comp = &release.components[0];
    let serials = dir.path().join("serials.csv");
    std::fs::write(&serials, format!("serial,model,warranty_end\nSRV0000001,{},2099-12-31\n", comp.models[0])).unwrap();
    let out = fwrepo(&["entitlements", "import", "--data", &data, serials.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // POST /v1/tokens works after a refresh, without a restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, body) = post_serial(addr, "SRV0000001");
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "token issuance still {status} after the import");
        std::thread::sleep(Duration::from_millis(200));
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let by_server = v["token"].as_str().unwrap().to_owned();
    let out = fwrepo(&["token", "issue", "--data", &data, "--keys", &keys, "--serial", "SRV0000001"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let by_cli = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let path = format!("/v1/blobs/{}", blake3::hash(&comp.data).to_hex());
    let (a, b) = (format!("Bearer {by_server}"), format!("Bearer {by_cli}"));
    assert_eq!(http(addr, "GET", &path, &[("Authorization", &a)], b"").0, 200);
    assert_eq!(http(addr, "GET", &path, &[("Authorization", &b)], b"").0, 200);

    // Revoked by jti: refused after a refresh, while the other token of the serial still works.
    let ring = fwrepo_entitle::IssuerKeyring::from_bytes(&std::fs::read(Path::new(&keys).join("issuer.jwks")).unwrap())
        .unwrap();
    let verifier = fwrepo_entitle::Verifier::new(ring.verifying_keys(), fwrepo_entitle::Revocations::new(), "fwrepo");
    let jti = verifier.authenticate(&by_server, fwrepo_entitle::UnixTime::now()).unwrap().jti;
    let out = fwrepo(&["token", "revoke", "--data", &data, &format!("--jti={jti}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    await_status(addr, &path, &a, 401, "token revoked by jti");
    assert_eq!(http(addr, "GET", &path, &[("Authorization", &b)], b"").0, 200);

    // Revoked by subject: every token of the serial is refused, and no new one is issued.
    let out = fwrepo(&["token", "revoke", "--data", &data, "--subject", "serial:SRV0000001"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    await_status(addr, &path, &b, 401, "token revoked by subject");
    assert_eq!(post_serial(addr, "SRV0000001").0, 403);
}

#[test]
fn serve_refuses_a_missing_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing").display().to_string();
    assert_one_line_error(&fwrepo(&["serve", "--data", &missing, "--listen", "127.0.0.1:0"]), "not an fwrepo data dir");
}
