//! fwget against a static host: real nginx on 127.0.0.1 serving `fwrepo export` of the origin,
//! no token. nginx is a test requirement (`cargo xtask setup` installs it): a missing nginx
//! fails these tests rather than skipping them.

use std::net::TcpListener;
use std::os::unix::io::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fwrepo_repo::Repo;
use serde_json::Value;

use super::{Origin, fwget, ok_json, origin, rand_suffix};

/// nginx serving `root`, one server that honours `Range` and one that ignores it
/// (`max_ranges 0`, which answers every Range request with the whole file). Each listens on a
/// socket this process bound to 127.0.0.1:0 and hands down (nginx's `NGINX` variable), so no
/// port is guessed. Runs as the test's user (`user root` keeps the worker able to read the
/// 0700 temp dir when that is root). Stopped when dropped.
struct Nginx {
    child: Child,
    ranges: String,
    no_ranges: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker, then exits.
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn nginx(dir: &Path, root: &Path) -> Nginx {
    std::fs::create_dir_all(dir).unwrap();
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    let t = dir.display();
    let conf = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {t}/nginx.pid;\nerror_log {t}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t};\n  \
         uwsgi_temp_path {t}; scgi_temp_path {t};\n  \
         server {{ listen 127.0.0.1:{pa}; root {root}; }}\n  \
         server {{ listen 127.0.0.1:{pb}; root {root}; max_ranges 0; }}\n}}\n",
        root = root.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let fds = [a.as_raw_fd(), b.as_raw_fd()];
    let mut cmd = Command::new("nginx");
    cmd.arg("-e").arg(dir.join("error.log")).arg("-p").arg(dir).arg("-c").arg(&conf_path);
    cmd.env("NGINX", format!("{};{};", fds[0], fds[1])).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: between fork and exec only fcntl runs, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child =
        cmd.spawn().unwrap_or_else(|e| panic!("starting nginx: {e} (a test requirement: run `cargo xtask setup`)"));
    drop((a, b)); // nginx holds its own copies
    let mut ng = Nginx { child, ranges: format!("http://127.0.0.1:{pa}"), no_ranges: format!("http://127.0.0.1:{pb}") };
    // Ready once it answers: the sockets accept already, so a request waits for nginx.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        if log.contains("using inherited sockets") {
            break;
        }
        let exited = ng.child.try_wait().unwrap();
        assert!(exited.is_none() && Instant::now() < deadline, "nginx did not start ({exited:?}): {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    ng
}

/// The origin exported to `OUT` and served by nginx.
fn exported(o: &Origin) -> (PathBuf, Nginx) {
    let out = o.tmp.path().join(format!("export-{}", rand_suffix()));
    let report = Repo::over(o.store.clone()).export(&out).unwrap();
    assert!(report.chunk_indexes >= 1 && report.chunk_indexes <= report.targets, "{report:?}");
    let ng = nginx(&o.tmp.path().join(format!("nginx-{}", rand_suffix())), &out);
    (out, ng)
}

fn init_static(o: &Origin, url: &str) -> PathBuf {
    let dir = o.tmp.path().join(format!("client-{}", rand_suffix()));
    let root = o.tmp.path().join("1.root.json");
    let v = ok_json(&dir, &["init", "--static", "--repo", url, "--root", root.to_str().unwrap()]);
    assert_eq!(v["static"], true);
    dir
}

fn warnings(v: &Value) -> Vec<String> {
    v["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()).collect()
}

/// The files of release `r` for the test model, by name.
fn release_files(o: &Origin, r: usize) -> Vec<(String, Vec<u8>)> {
    o.releases[r]
        .components
        .iter()
        .filter(|c| c.models.contains(&o.model))
        .map(|c| (c.file.clone(), c.data.clone()))
        .collect()
}

#[test]
fn fwget_refreshes_fetches_and_updates_by_delta_from_nginx_serving_an_export() {
    let o = origin();
    let (_, ng) = exported(&o);
    let dir = init_static(&o, &ng.ranges);
    // A static host has no token service, and needs none.
    let login = fwget(&dir, &["login", "--serial", "S1"]);
    assert!(!login.status.success() && String::from_utf8_lossy(&login.stderr).contains("static host"));
    assert!(ok_json(&dir, &["refresh"])["targets"].as_u64().unwrap() >= 2);

    // One target by name.
    let (name, bytes) = release_files(&o, 0).remove(0);
    let target = format!("{}/{name}", o.releases[0].id);
    let one = o.tmp.path().join("one");
    let v = ok_json(&dir, &["fetch", &target, "--out", one.to_str().unwrap()]);
    assert!(warnings(&v).is_empty(), "{v}");
    assert_eq!(std::fs::read(one.join(&name)).unwrap(), bytes);

    // Release one, then the delta to release two.
    let out = o.tmp.path().join("installed");
    let first =
        ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap(), "--release", &o.releases[0].id]);
    assert!(warnings(&first).is_empty(), "{first}");
    let second = ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap()]);
    assert!(warnings(&second).is_empty(), "{second}");
    let files = second["files"].as_array().unwrap();
    assert!(!files.is_empty());
    let full: u64 = files.iter().map(|f| f["length"].as_u64().unwrap()).sum();
    let wire: u64 = files.iter().map(|f| f["wire_bytes"].as_u64().unwrap()).sum();
    let seeded: u64 = files.iter().map(|f| f["seed_bytes"].as_u64().unwrap()).sum();
    assert!(
        seeded > 0 && wire < full / 2,
        "a delta over nginx: {wire} bytes on the wire, {seeded} from seeds, {full} in all"
    );
    for (name, bytes) in release_files(&o, 1) {
        assert_eq!(std::fs::read(out.join(&name)).unwrap(), bytes, "{name}");
    }
}

#[test]
fn a_static_host_that_ignores_range_is_read_whole_once_verified_and_named() {
    let o = origin();
    let (_, ng) = exported(&o);
    let dir = init_static(&o, &ng.no_ranges);
    ok_json(&dir, &["refresh"]);
    let out = o.tmp.path().join("installed");
    ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap(), "--release", &o.releases[0].id]);
    // With seeds in the out dir the client asks for ranges; the host answers 200.
    let v = ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap()]);
    let w = warnings(&v);
    assert!(w.iter().any(|w| w.contains(&ng.no_ranges) && w.contains("does not support Range")), "{w:?}");
    for f in v["files"].as_array().unwrap() {
        let (len, wire, requests) =
            (f["length"].as_u64().unwrap(), f["wire_bytes"].as_u64().unwrap(), f["requests"].as_u64().unwrap());
        // The chunk index and at most one read of the whole file (none if seeds had it all).
        assert!(requests <= 2, "{f}");
        assert!(wire < 2 * len + 64 * 1024, "read once: {f}");
    }
    for (name, bytes) in release_files(&o, 1) {
        assert_eq!(std::fs::read(out.join(&name)).unwrap(), bytes, "{name}");
    }
}

/// Flips one byte of `file` in place.
fn flip(file: &Path, at: usize) {
    let mut b = std::fs::read(file).unwrap();
    b[at] ^= 0x01;
    std::fs::write(file, b).unwrap();
}

#[test]
fn a_static_host_serving_a_flipped_byte_or_a_wrong_chunk_index_leaves_no_file() {
    let o = origin();
    let (export, ng) = exported(&o);
    let dir = init_static(&o, &ng.ranges);
    ok_json(&dir, &["refresh"]);
    let files = release_files(&o, 0);
    let (name0, bytes0) = &files[0];
    let (name1, _) = &files.get(1).expect("two components for the model");
    let find = |name: &str| -> PathBuf {
        let d = export.join("targets").join(&o.releases[0].id);
        let f = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path());
        f.into_iter().find(|p| p.file_name().unwrap().to_str().unwrap().ends_with(&format!(".{name}"))).unwrap()
    };

    // A flipped byte in the target file.
    flip(&find(name0), bytes0.len() / 2);
    let out = o.tmp.path().join("out-flip");
    let target = format!("{}/{name0}", o.releases[0].id);
    let r = fwget(&dir, &["fetch", &target, "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(fwget::exit::VERIFICATION), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!out.join(name0).exists(), "nothing under the final name");

    // A chunk index that does not hash to the signed id.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(find(name1)).unwrap()));
    let target1 = format!("{}/{name1}", o.releases[0].id);
    let index_id = chunk_index_id(&dir, &target1, &sha);
    flip(&export.join(fwrepo_chunk::ChunkIndex::export_path(&index_id.parse().unwrap())), 30);
    let out = o.tmp.path().join("out-index");
    let r = fwget(&dir, &["fetch", &target1, "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(fwget::exit::VERIFICATION), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("chunk index"), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!out.join(name1).exists(), "nothing under the final name");
}

/// The signed `custom.chunk_index` of `target` (whose file hashes to `sha`), from the signed
/// metadata the client stored.
fn chunk_index_id(dir: &Path, target: &str, sha: &str) -> String {
    let release = target.split('/').next().unwrap();
    let v = ok_json(dir, &["show", release]);
    let c = v["components"].as_array().unwrap().iter().find(|c| c["target"] == target).unwrap();
    assert_eq!(c["sha256"], sha, "{c}");
    c["chunk_index"].as_str().unwrap().to_owned()
}
