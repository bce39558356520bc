//! fwget with a partner mirror (`--mirror URL`): a mirror data dir synced from the origin by
//! `fwrepo-mirror` and served by `fwrepo-server` in mirror mode. Downloads come from the
//! mirror; a mirror that serves a flipped byte is failed over to the origin and named.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fwrepo_mirror::{Mirror, MirrorConfig, SyncOptions};
use fwrepo_server::{ServerConfig, ServerState};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Origin, PARTNER_CREDENTIAL, RepoMetadata, ok_json, origin, rand_suffix, throttled_proxy, verifier};

/// A mirror of `o`, synced once, served on 127.0.0.1:0.
fn mirror(o: &Origin) -> SocketAddr {
    let dir = o.tmp.path().join(format!("mirror-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let cred = dir.join("credential");
    std::fs::write(&cred, format!("{PARTNER_CREDENTIAL}\n")).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("http://{}", o.addr);
    let config = MirrorConfig {
        upstream: url.clone(),
        token_url: url.clone(),
        credential_file: cred,
        models: Vec::new(),
        gc_grace_s: fwrepo_mirror::DEFAULT_GC_GRACE_S,
    };
    let m =
        Mirror::init(&dir.join("data"), &config, &o.tmp.path().join("1.root.json"), &fwrepo_server::column_families())
            .unwrap();
    let report = o.rt.block_on(m.sync(&SyncOptions::default())).unwrap();
    assert!(report.targets_new >= 1 && report.chunks_fetched > 0, "{report:?}");
    let store = m.store().clone();
    let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let state =
        ServerState::new(&config, store.clone(), Arc::new(RepoMetadata(store)), verifier()).unwrap().with_mirror(url);
    let state = Arc::new(state);
    let bound = o.rt.block_on(fwrepo_server::bind(config)).unwrap();
    let addr = bound.local_addr();
    o.rt.spawn(async move { bound.run(state, std::future::pending()).await });
    addr
}

/// An HTTP/1.1 proxy in front of `to` that flips the first body byte of every blob answer
/// (`/v1/blobs/<id>`, not chunk indexes): a mirror serving wrong bytes.
fn flipping_proxy(rt: &tokio::runtime::Runtime, to: SocketAddr) -> SocketAddr {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(to).await else { return };
                // Bounded: a test client sends a few hundred requests at most.
                for _ in 0..10_000 {
                    let Some(head) = read_head(&mut client).await else { return };
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                    // A request body (a delta request's JSON) goes through unchanged.
                    let req_len: usize = text
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:").map(|v| v.trim().parse().expect("content-length"))
                        })
                        .unwrap_or(0);
                    let mut req_body = vec![0u8; req_len];
                    if client.read_exact(&mut req_body).await.is_err() {
                        return;
                    }
                    if server.write_all(&head).await.is_err() || server.write_all(&req_body).await.is_err() {
                        return;
                    }
                    let Some(resp) = read_head(&mut server).await else { return };
                    let resp_text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
                    let len: usize = resp_text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().expect("content-length"));
                    assert!(!resp_text.contains("transfer-encoding: chunked"), "the proxy reads sized bodies only");
                    let mut body = vec![0u8; len];
                    if server.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if path.starts_with("/v1/blobs/") && !path.ends_with("/chunks") && !body.is_empty() {
                        // A range's first byte, or a byte inside a delta reply's last frame.
                        let at = if path.ends_with("/deltas") { body.len() - 1 } else { 0 };
                        body[at] ^= 0x01;
                    }
                    if client.write_all(&resp).await.is_err() || client.write_all(&body).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one message head (through the blank line); `None` at end of stream.
async fn read_head(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 || s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

fn init_with_mirror(o: &Origin, origin_url: &str, mirror_url: &str) -> std::path::PathBuf {
    let dir = o.tmp.path().join(format!("client-{}", rand_suffix()));
    let root = o.tmp.path().join("1.root.json");
    ok_json(&dir, &["init", "--repo", origin_url, "--mirror", mirror_url, "--root", root.to_str().unwrap()]);
    ok_json(&dir, &["login", "--serial", "S1"]);
    ok_json(&dir, &["refresh"]);
    dir
}

fn installed_matches(o: &Origin, out: &std::path::Path, r: usize) {
    for c in o.releases[r].components.iter().filter(|c| c.models.contains(&o.model)) {
        assert_eq!(std::fs::read(out.join(&c.file)).unwrap(), c.data, "{}", c.file);
    }
}

#[test]
fn fwget_with_a_mirror_downloads_from_the_mirror() {
    let o = origin();
    let m = mirror(&o);
    // Counting proxies in front of both, fast enough not to slow anything.
    let (origin_proxy, from_origin) = throttled_proxy(&o.rt, o.addr, 1 << 40);
    let (mirror_proxy, from_mirror) = throttled_proxy(&o.rt, m, 1 << 40);
    let dir = init_with_mirror(&o, &format!("http://{origin_proxy}"), &format!("http://{mirror_proxy}"));
    let (o0, m0) = (from_origin.load(Ordering::Relaxed), from_mirror.load(Ordering::Relaxed));
    let out = o.tmp.path().join("installed");
    let v =
        ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap(), "--release", &o.releases[0].id]);
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.is_empty(), "{v}");
    installed_matches(&o, &out, 0);
    let full: u64 = v["files"].as_array().unwrap().iter().map(|f| f["length"].as_u64().unwrap()).sum();
    let (origin_bytes, mirror_bytes) =
        (from_origin.load(Ordering::Relaxed) - o0, from_mirror.load(Ordering::Relaxed) - m0);
    assert!(mirror_bytes >= full, "the mirror served the files: {mirror_bytes} bytes for {full}");
    assert!(origin_bytes < full / 4, "the origin served metadata only: {origin_bytes} bytes for {full}");
}

#[test]
fn a_mirror_serving_a_flipped_byte_is_failed_over_to_the_origin_and_named() {
    let o = origin();
    let m = mirror(&o);
    let bad = flipping_proxy(&o.rt, m);
    let bad_url = format!("http://{bad}");
    let dir = init_with_mirror(&o, &format!("http://{}", o.addr), &bad_url);
    let out = o.tmp.path().join("installed");
    let v =
        ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap(), "--release", &o.releases[0].id]);
    let warnings: Vec<&str> = v["warnings"].as_array().unwrap().iter().map(|w: &Value| w.as_str().unwrap()).collect();
    assert!(
        warnings.iter().any(|w| w.contains(&bad_url) && w.contains("does not match signed metadata")),
        "the user is told which mirror served bad data: {warnings:?}"
    );
    installed_matches(&o, &out, 0);
}
