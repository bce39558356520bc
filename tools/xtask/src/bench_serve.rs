//! `cargo xtask bench serve`: fwrepo against nginx serving the same firmware bytes on loopback.
//!
//! Both servers get one core (`taskset -c 0`; nginx with one worker process, fwrepo with one
//! runtime thread) and wrk gets the other, with keep-alive and 64 connections. fwrepo checks a
//! bearer token on every request; nginx serves plain files with `sendfile on`. Three loads:
//! random 64 KiB ranges (requests/s), whole 8 MiB blobs (GB/s) and 8-range requests
//! (requests/s). The last line is the worst fwrepo/nginx ratio.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{apt_install, cargo, run_capture, target_dir};

const BLOBS: usize = 128;
const BLOB_LEN: usize = 8 << 20;
const MODEL: &str = "ProLiant DL380 Gen10";
const SECONDS: u32 = 10;

/// Stops the child when dropped, so no run leaves a server behind: SIGTERM first (nginx's
/// master then takes its worker down with it), SIGKILL if it lingers.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(port: u16, path: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("http://127.0.0.1:{port}{path}")])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("server on port {port} did not answer {path} within 20 s")
}

/// A wrk script that requests a random one of `paths`, with `ranges` random ranges of
/// `range_len` bytes (none: the whole file), and the given extra header.
fn wrk_script(paths: &[String], ranges: usize, range_len: usize, auth: Option<&str>) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    let auth = auth.map(|t| format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n")).unwrap_or_default();
    format!(
        r#"local paths = {{{}}}
{auth}math.randomseed(os.time())
request = function()
  local path = paths[math.random(#paths)]
  local n = {ranges}
  if n > 0 then
    local parts = {{}}
    for i = 1, n do
      local s = math.random(0, {max_start})
      parts[i] = s .. "-" .. (s + {last})
    end
    wrk.headers["Range"] = "bytes=" .. table.concat(parts, ",")
  end
  return wrk.format("GET", path)
end
"#,
        list.join(","),
        max_start = BLOB_LEN - range_len.max(1),
        last = range_len.saturating_sub(1),
    )
}

/// Runs wrk on core 1 and returns (requests/s, bytes/s).
fn wrk(port: u16, script: &Path) -> Result<(f64, f64)> {
    let out = run_capture(
        Command::new("taskset")
            .args(["-c", "1", "wrk", "-t1", "-c64", &format!("-d{SECONDS}s"), "-s"])
            .arg(script)
            .arg(format!("http://127.0.0.1:{port}/")),
    )?;
    if let Some(line) = out.lines().find(|l| l.contains("Non-2xx")) {
        bail!("errors during the run: {}\n{out}", line.trim());
    }
    let field = |name: &str| -> Result<&str> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .with_context(|| format!("no {name} in wrk output:\n{out}"))
    };
    let rps: f64 = field("Requests/sec:")?.parse()?;
    let transfer = field("Transfer/sec:")?;
    let (num, unit) = transfer.split_at(transfer.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(transfer.len()));
    let mult = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown unit {other:?} in {transfer:?}"),
    };
    Ok((rps, num.parse::<f64>()? * mult))
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().to_owned()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn run_bench() -> Result<()> {
    for (cmd, pkg) in [("nginx", "nginx"), ("wrk", "wrk"), ("curl", "curl")] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {cmd}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            apt_install(&[pkg])?;
        }
    }
    cargo(&["build", "--release", "-p", "fwrepo"], &[])?;
    let bin = target_dir().join("release/fwrepo");
    let tmp = std::env::temp_dir().join(format!("fwrepo-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = bench(&bin, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench(bin: &Path, tmp: &Path) -> Result<()> {
    let files = tmp.join("www/files");
    let release = tmp.join("release");
    std::fs::create_dir_all(&files)?;
    std::fs::create_dir_all(release.join("firmware"))?;
    println!("generating {BLOBS} × {} MiB of firmware-like blobs …", BLOB_LEN >> 20);
    let mut rng = fwrepo_synth::Rng::new(7);
    let mut manifest = String::from("[release]\nid = \"2024.01.0\"\nname = \"bench\"\ndate = \"2024-01-01\"\n");
    let mut names = Vec::new();
    for i in 0..BLOBS {
        let data = fwrepo_synth::firmware_image(&mut rng, BLOB_LEN);
        let name = format!("cp{i:06}.bin");
        std::fs::write(files.join(&name), &data)?;
        std::fs::write(release.join("firmware").join(&name), &data)?;
        manifest.push_str(&format!(
            "\n[[component]]\nfile = \"firmware/{name}\"\nname = \"Component {i}\"\nkind = \"firmware\"\nversion = \"1.{i}\"\nmodels = [\"{MODEL}\"]\n"
        ));
        names.push(name);
    }
    std::fs::write(release.join("release.toml"), manifest)?;

    // fwrepo: repository, release, a serial in warranty, its token.
    let data = tmp.join("data");
    let keys = tmp.join("keys");
    run_capture(Command::new(bin).args(["keys", "generate", "--out"]).arg(&keys))?;
    run_capture(Command::new(bin).args(["keys", "rotate-issuer", "--keys"]).arg(&keys))?;
    run_capture(Command::new(bin).args(["init", "--data"]).arg(&data).arg("--keys").arg(&keys))?;
    run_capture(
        Command::new(bin)
            .args(["publish", "--data"])
            .arg(&data)
            .arg("--keys")
            .arg(&keys)
            .arg(release.join("release.toml")),
    )?;
    let serials = tmp.join("serials.csv");
    std::fs::write(&serials, format!("serial,model,warranty_end\nBENCH00001,{MODEL},2099-12-31\n"))?;
    run_capture(Command::new(bin).args(["entitlements", "import", "--data"]).arg(&data).arg(&serials))?;
    let token = run_capture(
        Command::new(bin)
            .args(["token", "issue", "--serial", "BENCH00001", "--data"])
            .arg(&data)
            .arg("--keys")
            .arg(&keys),
    )?;
    let token = token.trim().to_owned();
    // Ingesting what is already published stores nothing and prints the blob ids.
    let ids = run_capture(
        Command::new(bin).args(["ingest", "--json", "--data"]).arg(&data).args(names.iter().map(|n| files.join(n))),
    )?;
    let blob_paths: Vec<String> = ids
        .lines()
        .map(|l| {
            let at = l.find("\"blob\":\"").context("no blob id in ingest output")? + 8;
            Ok(format!("/v1/blobs/{}", &l[at..at + 64]))
        })
        .collect::<Result<_>>()?;
    let file_paths: Vec<String> = names.iter().map(|n| format!("/files/{n}")).collect();

    // nginx, one worker on core 0.
    let nginx_port = free_port()?;
    let conf = tmp.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  open_file_cache max=1024;\n  keepalive_requests 1000000;\n  max_ranges 64;\n\
             client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t}; uwsgi_temp_path {t}; scgi_temp_path {t};\n\
             server {{\n    listen 127.0.0.1:{nginx_port};\n    root {root};\n  }}\n}}\n",
            pid = tmp.join("nginx.pid").display(),
            err = tmp.join("nginx-error.log").display(),
            t = tmp.display(),
            root = tmp.join("www").display(),
        ),
    )?;
    let _nginx =
        Guard(Command::new("taskset").args(["-c", "0", "nginx", "-c"]).arg(&conf).stderr(Stdio::null()).spawn()?);
    wait_ready(nginx_port, &file_paths[0])?;

    // fwrepo, one runtime thread on core 0.
    let fw_port = free_port()?;
    let fwrepo = Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin)
        .args(["serve", "--threads", "1", "--listen", &format!("127.0.0.1:{fw_port}"), "--data"])
        .arg(&data)
        .arg("--keys")
        .arg(&keys)
        .stderr(Stdio::null())
        .spawn()?;
    let fw_pid = fwrepo.id();
    let _fwrepo = Guard(fwrepo);
    wait_ready(fw_port, "/readyz")?;

    let loads: [(&str, usize, usize, bool); 3] = [
        ("random 64 KiB ranges (req/s)", 1, 64 << 10, false),
        ("whole 8 MiB blobs (GB/s)", 0, 0, true),
        ("8-range requests (req/s)", 8, 4 << 10, false),
    ];
    let mut worst = f64::MAX;
    println!("\n{:<32} {:>14} {:>14} {:>8}", "load", "fwrepo", "nginx", "ratio");
    for (name, ranges, len, bytes) in loads {
        let fw_script = tmp.join("fw.lua");
        std::fs::write(&fw_script, wrk_script(&blob_paths, ranges, len, Some(&token)))?;
        let ng_script = tmp.join("ng.lua");
        std::fs::write(&ng_script, wrk_script(&file_paths, ranges, len, None))?;
        let (fw_rps, fw_bps) = wrk(fw_port, &fw_script)?;
        let (ng_rps, ng_bps) = wrk(nginx_port, &ng_script)?;
        let (fw, ng) = if bytes { (fw_bps / 1e9, ng_bps / 1e9) } else { (fw_rps, ng_rps) };
        let ratio = fw / ng;
        worst = worst.min(ratio);
        println!("{name:<32} {fw:>14.2} {ng:>14.2} {ratio:>8.2}");
    }
    println!(
        "fwrepo RSS: {} KiB anonymous (heap), {} KiB file-backed (mapped packs, not heap)",
        rss_kib(fw_pid, "RssAnon:"),
        rss_kib(fw_pid, "RssFile:")
    );
    println!("worst fwrepo/nginx = {worst:.2}");
    Ok(())
}
