//! `cargo xtask bench delta`: bytes an update costs with `fwget` against the chunk ideal,
//! zsync, zchunk and the static deltas (xdelta3, zstd --patch-from, bsdiff), on loopback.
//!
//! Pairs: every changed file of at least 4 KiB of the real Debian pairs (old version as seed,
//! new as target, summed per package) and every changed component of each consecutive pair
//! of the synthetic SPP series. fwget fetches each target from a `fwrepo serve` origin with
//! only the old file as its seed; zsync and zchunk fetch from one nginx, whose access log
//! (`$bytes_sent`, headers included) counts what they moved; the static deltas are file sizes.
//! Every external run is capped with `timeout`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fwrepo_chunk::{ChunkIndex, Chunker, ChunkerParams, Digest};
use serde_json::Value;

use crate::dedup::files_under;
use crate::{REAL, apt_install, cargo, root, run_capture, target_dir};

/// Files smaller than this are left out (what the issue measures).
const MIN_FILE: u64 = 4096;
/// Seconds any one external run may take.
const TIMEOUT_S: &str = "120";
/// The agreement the benchmark client logs in with: every model, so every synthetic
/// component (each applies to its own models) can be fetched with one token.
const AGREEMENT: &str = "SA-BENCH-DELTA";

/// Stops a server when dropped: SIGTERM, then SIGKILL if it lingers.
struct Guard(Child);

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

/// One old → new file pair and the target the origin serves the new file as.
struct Pair {
    old: PathBuf,
    new: PathBuf,
    target: String,
}

/// The pairs summed on one line.
struct Group {
    name: String,
    pairs: Vec<Pair>,
}

/// What fwget did for one target.
#[derive(Default, Clone, Copy)]
struct Fetch {
    wire: u64,
    requests: u64,
    /// The file's own requests (chunk index, ranges or deltas), without metadata.
    file_requests: u64,
    delta_bytes: Option<u64>,
    cpu_s: f64,
}

/// Every figure of one pair (or of a sum of pairs).
#[derive(Default, Clone, Copy)]
struct Row {
    files: u64,
    full: u64,
    fwget: Fetch,
    no_deltas: Option<Fetch>,
    /// Bytes of target chunks the seed lacks, each distinct chunk once.
    new_chunks: u64,
    /// New chunks + the chunk index + the metadata a fetch re-reads.
    ideal: u64,
    runs: u64,
    zsync: Option<u64>,
    zchunk: Option<u64>,
    xdelta3: Option<u64>,
    zstd_patch: Option<u64>,
    bsdiff: Option<u64>,
    zstd19: Option<u64>,
    seed_bytes: u64,
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a? + b?)
}

impl Fetch {
    fn add(&mut self, o: &Fetch) {
        self.wire += o.wire;
        self.requests += o.requests;
        self.file_requests += o.file_requests;
        self.delta_bytes = match (self.delta_bytes, o.delta_bytes) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.cpu_s += o.cpu_s;
    }
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.files += o.files;
        self.full += o.full;
        self.fwget.add(&o.fwget);
        // A sum has the column only if every run in it has.
        self.no_deltas = match (self.no_deltas, o.no_deltas) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            _ => None,
        };
        self.new_chunks += o.new_chunks;
        self.ideal += o.ideal;
        self.runs += o.runs;
        self.zsync = add_opt(self.zsync, o.zsync);
        self.zchunk = add_opt(self.zchunk, o.zchunk);
        self.xdelta3 = add_opt(self.xdelta3, o.xdelta3);
        self.zstd_patch = add_opt(self.zstd_patch, o.zstd_patch);
        self.bsdiff = add_opt(self.bsdiff, o.bsdiff);
        self.zstd19 = add_opt(self.zstd19, o.zstd19);
        self.seed_bytes += o.seed_bytes;
    }

    /// The sum starts with every tool present, so a failed run shows as missing.
    fn zero(no_deltas: bool) -> Row {
        Row {
            no_deltas: no_deltas.then(Fetch::default),
            zsync: Some(0),
            zchunk: Some(0),
            xdelta3: Some(0),
            zstd_patch: Some(0),
            bsdiff: Some(0),
            zstd19: Some(0),
            ..Row::default()
        }
    }

    fn min_static(&self) -> Option<u64> {
        [self.xdelta3, self.zstd_patch, self.bsdiff].into_iter().flatten().min()
    }

    fn min_block(&self) -> Option<u64> {
        [self.zsync, self.zchunk].into_iter().flatten().min()
    }
}

fn ratio(a: u64, b: Option<u64>) -> String {
    b.filter(|&b| b > 0).map_or("-".into(), |b| format!("{:.2}", a as f64 / b as f64))
}

fn cell(v: Option<u64>) -> String {
    v.map_or("fail".into(), |v| v.to_string())
}

/// The first few of `items`, for a line that would otherwise run on.
fn some(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        n if n <= 5 => format!(": {}", items.join(", ")),
        n => format!(": {}, … ({} more)", items[..5].join(", "), n - 5),
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().is_ok_and(|o| o.status.success())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `cmd` under `timeout`; `None` when it fails or runs out of time (the reason is printed).
fn timed(cmd: &mut Command) -> Option<String> {
    let shown = format!("{cmd:?}");
    let mut t = Command::new("timeout");
    t.arg(TIMEOUT_S).arg(cmd.get_program()).args(cmd.get_args()).stdin(Stdio::null());
    if let Some(d) = cmd.get_current_dir() {
        t.current_dir(d);
    }
    match t.output() {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            eprintln!("  {shown} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim());
            None
        }
        Err(e) => {
            eprintln!("  {shown}: {e}");
            None
        }
    }
}

fn size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// nginx on 127.0.0.1 with its best settings for this load, logging `$bytes_sent` per request.
struct Nginx {
    _guard: Guard,
    base: String,
    www: PathBuf,
    log: PathBuf,
}

impl Nginx {
    fn start(tmp: &Path) -> Result<Nginx> {
        let www = tmp.join("www");
        std::fs::create_dir_all(&www)?;
        let port = free_port()?;
        let log = tmp.join("nginx-access.log");
        let conf = tmp.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  log_format sent '$bytes_sent';\n  access_log {log} sent;\n  sendfile on;\n  tcp_nopush off;\n  tcp_nodelay on;\n\
                 keepalive_requests 100000;\n  default_type application/octet-stream;\n\
                 client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t}; uwsgi_temp_path {t}; scgi_temp_path {t};\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
                pid = tmp.join("nginx.pid").display(),
                err = tmp.join("nginx-error.log").display(),
                log = log.display(),
                t = tmp.display(),
                root = www.display(),
            ),
        )?;
        let guard = Guard(Command::new("nginx").arg("-c").arg(&conf).stderr(Stdio::null()).spawn()?);
        std::fs::write(www.join("ready"), b"ok")?;
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while !Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("{base}/ready")])
            .status()
            .is_ok_and(|s| s.success())
        {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("nginx did not answer within 20 s (see {})", tmp.join("nginx-error.log").display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Nginx { _guard: guard, base, www, log })
    }

    /// Bytes nginx sent (heads and bodies) while `f` ran; `None` if `f` failed.
    fn count(&self, f: impl FnOnce() -> Option<()>) -> Option<u64> {
        let before = size(&self.log).unwrap_or(0);
        f()?;
        let text = std::fs::read(&self.log).ok()?;
        let lines = String::from_utf8_lossy(text.get(before as usize..)?).into_owned();
        Some(lines.lines().filter_map(|l| l.trim().parse::<u64>().ok()).sum())
    }
}

/// The fwrepo origin with every release published, and a client dir logged in to it.
struct Origin {
    _guard: Guard,
    fwget: PathBuf,
    client: PathBuf,
    /// Body bytes of `timestamp.json`: the metadata each fetch after the first refresh reads.
    timestamp_len: u64,
    /// What the client's first full refresh cost on the wire.
    refresh_wire: u64,
    params: ChunkerParams,
    no_deltas_flag: bool,
    /// The server's address, for `/metrics`.
    base: String,
    /// Wall-clock seconds of every `fwrepo publish` (chunking, storing, signing and the
    /// precomputed deltas).
    publish_s: f64,
}

fn fwget_json(fwget: &Path, client: &Path, args: &[&str]) -> Result<Value> {
    let out = run_capture(Command::new(fwget).arg("--dir").arg(client).args(args).arg("--json"))?;
    serde_json::from_str(out.trim()).with_context(|| format!("fwget {args:?} printed {out:?}"))
}

impl Origin {
    fn start(fwrepo: &Path, fwget: &Path, tmp: &Path, manifests: &[PathBuf]) -> Result<Origin> {
        let (data, keys) = (tmp.join("data"), tmp.join("keys"));
        let params = ChunkerParams::default();
        run_capture(Command::new(fwrepo).args(["keys", "generate", "--out"]).arg(&keys))?;
        run_capture(Command::new(fwrepo).args(["keys", "rotate-issuer", "--keys"]).arg(&keys))?;
        run_capture(
            Command::new(fwrepo)
                .args(["init", "--data"])
                .arg(&data)
                .arg("--keys")
                .arg(&keys)
                .args(["--chunk-min", &params.min_size.to_string()])
                .args(["--chunk-avg", &params.avg_size.to_string()])
                .args(["--chunk-max", &params.max_size.to_string()]),
        )?;
        let publish_started = Instant::now();
        for m in manifests {
            println!("publish {}", m.display());
            run_capture(Command::new(fwrepo).args(["publish", "--data"]).arg(&data).arg("--keys").arg(&keys).arg(m))?;
        }
        let publish_s = publish_started.elapsed().as_secs_f64();
        let csv = tmp.join("agreements.csv");
        std::fs::write(
            &csv,
            format!("agreement,serials,models,start,end,status\n{AGREEMENT},,*,2020-01-01,2099-12-31,active\n"),
        )?;
        run_capture(Command::new(fwrepo).args(["entitlements", "import", "--data"]).arg(&data).arg(&csv))?;
        let mut child = Command::new(fwrepo)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--keys")
            .arg(&keys)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let guard = Guard(child);
        let base = line.trim().rsplit(' ').next().context("server address")?.to_owned();
        if !base.starts_with("http://") {
            bail!("fwrepo serve printed {line:?}, not its address");
        }
        let root_json = tmp.join("1.root.json");
        run_capture(
            Command::new("curl").args(["-sf", "-o"]).arg(&root_json).arg(format!("{base}/metadata/1.root.json")),
        )?;
        let ts = run_capture(Command::new("curl").args(["-sf", &format!("{base}/metadata/timestamp.json")]))?;
        let client = tmp.join("client");
        fwget_json(fwget, &client, &["init", "--repo", &base, "--root", &root_json.display().to_string()])?;
        fwget_json(fwget, &client, &["login", "--agreement", AGREEMENT])?;
        let refresh = fwget_json(fwget, &client, &["refresh"])?;
        let help = run_capture(Command::new(fwget).args(["fetch", "--help"]))?;
        Ok(Origin {
            _guard: guard,
            fwget: fwget.to_owned(),
            client,
            timestamp_len: ts.len() as u64,
            refresh_wire: refresh["wire_bytes"].as_u64().unwrap_or(0),
            params,
            no_deltas_flag: help.contains("--no-deltas"),
            base,
            publish_s,
        })
    }

    /// The server's `fwrepo_delta_*` counters.
    fn delta_metrics(&self) -> Result<std::collections::HashMap<String, f64>> {
        let text = run_capture(Command::new("curl").args(["-sf", &format!("{}/metrics", self.base)]))?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("fwrepo_delta_"))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect())
    }

    /// The target paths and component names of a release, from signed metadata.
    fn components(&self, release: &str) -> Result<Vec<(String, String)>> {
        let show = fwget_json(&self.fwget, &self.client, &["show", release])?;
        show["components"]
            .as_array()
            .context("fwget show: no components")?
            .iter()
            .map(|c| {
                Ok((
                    c["target"].as_str().context("no target")?.to_owned(),
                    c["component"].as_str().context("no component")?.to_owned(),
                ))
            })
            .collect()
    }

    /// `fwget fetch TARGET --seed OLD` into a fresh dir, its CPU time measured by time(1).
    fn fetch(&self, pair: &Pair, out: &Path, extra: &[&str]) -> Option<Fetch> {
        let times = out.with_extension("time");
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%U %S", "-o"])
            .arg(&times)
            .arg(&self.fwget)
            .arg("--dir")
            .arg(&self.client)
            .args(["fetch", &pair.target, "--json", "--out"])
            .arg(out)
            .arg("--seed")
            .arg(&pair.old)
            .args(extra);
        let text = timed(&mut cmd)?;
        let v: Value = serde_json::from_str(text.trim()).ok()?;
        let file = &v["files"][0];
        let cpu = std::fs::read_to_string(&times).ok()?;
        let cpu_s = cpu.split_whitespace().filter_map(|s| s.parse::<f64>().ok()).sum();
        let got = std::fs::read(out.join(pair.target.rsplit('/').next()?)).ok()?;
        if got != std::fs::read(&pair.new).ok()? {
            eprintln!("  fwget fetched {} but the bytes differ from {}", pair.target, pair.new.display());
            return None;
        }
        Some(Fetch {
            wire: v["wire_bytes"].as_u64()?,
            requests: v["requests"].as_u64()?,
            file_requests: file["requests"].as_u64()?,
            delta_bytes: file["delta_bytes"].as_u64().or(v["delta_bytes"].as_u64()),
            cpu_s,
        })
    }
}

/// (bytes of distinct target chunks the seed lacks, encoded chunk index length, runs of
/// adjacent missing chunks), with the repository's chunker.
fn chunk_ideal(params: ChunkerParams, old: &[u8], new: &[u8]) -> (u64, u64, u64) {
    let chunker = Chunker::new(params);
    let held: HashSet<Digest> = chunker.chunks(old).map(|r| Digest::of(&old[r])).collect();
    let mut index = ChunkIndex { blob_len: new.len() as u64, chunks: Vec::new() };
    let (mut bytes, mut runs, mut prev_missing) = (0u64, 0u64, false);
    let mut seen = HashSet::new();
    for r in chunker.chunks(new) {
        let id = Digest::of(&new[r.clone()]);
        index.chunks.push((id, r.len() as u32));
        let missing = !held.contains(&id);
        if missing && seen.insert(id) {
            bytes += r.len() as u64;
        }
        if missing && !prev_missing {
            runs += 1;
        }
        prev_missing = missing;
    }
    (bytes, index.to_bytes().len() as u64, runs)
}

/// Every measure of one pair; `n` names its working dirs.
fn measure(o: &Origin, ng: &Nginx, work: &Path, n: usize, pair: &Pair) -> Result<Row> {
    let dir = work.join(format!("{n:04}"));
    std::fs::create_dir_all(&dir)?;
    let old = std::fs::read(&pair.old)?;
    let new = std::fs::read(&pair.new)?;
    let (new_chunks, index_len, runs) = chunk_ideal(o.params, &old, &new);
    let mut row = Row {
        files: 1,
        full: new.len() as u64,
        new_chunks,
        ideal: new_chunks + index_len + o.timestamp_len,
        runs,
        seed_bytes: old.len() as u64,
        ..Row::default()
    };
    row.fwget =
        o.fetch(pair, &dir.join("fwget"), &[]).with_context(|| format!("fwget could not fetch {}", pair.target))?;
    if o.no_deltas_flag {
        row.no_deltas = o.fetch(pair, &dir.join("fwget-no-deltas"), &["--no-deltas"]);
    }

    // zsync: control file made on the server side, then a download seeded with the old file.
    let served = ng.www.join(format!("{n:04}"));
    std::fs::create_dir_all(&served)?;
    let name = "new.bin";
    std::fs::copy(&pair.new, served.join(name))?;
    let url = format!("{}/{n:04}/{name}", ng.base);
    let made = timed(
        Command::new("zsyncmake")
            .args(["-Z", "-u", &url, "-o"])
            .arg(served.join("new.bin.zsync"))
            .arg(served.join(name)),
    );
    let zs = dir.join("zsync");
    std::fs::create_dir_all(&zs)?;
    row.zsync = made.and_then(|_| {
        ng.count(|| {
            timed(
                Command::new("zsync")
                    .args(["-q", "-i"])
                    .arg(&pair.old)
                    .arg("-o")
                    .arg(zs.join(name))
                    .arg(format!("{url}.zsync"))
                    .current_dir(&zs),
            )?;
            (std::fs::read(zs.join(name)).ok()? == new).then_some(())
        })
    });

    // zchunk: both files as .zck; the download reuses the old file's chunks.
    let zk = dir.join("zchunk");
    std::fs::create_dir_all(&zk)?;
    let made = timed(Command::new("zck").arg("-o").arg(served.join("new.bin.zck")).arg(&pair.new))
        .and_then(|_| timed(Command::new("zck").arg("-o").arg(dir.join("old.zck")).arg(&pair.old)));
    row.zchunk = made.and_then(|_| {
        ng.count(|| {
            timed(
                Command::new("zckdl")
                    .arg("-q")
                    .arg("--source")
                    .arg(dir.join("old.zck"))
                    .arg(format!("{url}.zck"))
                    .current_dir(&zk),
            )?;
            // unzck writes new.bin next to new.bin.zck.
            timed(Command::new("unzck").arg(zk.join("new.bin.zck")).current_dir(&zk))?;
            (std::fs::read(zk.join(name)).ok()? == new).then_some(())
        })
    });

    let out = |f: &str| dir.join(f);
    row.xdelta3 = timed(
        Command::new("xdelta3")
            .args(["-9", "-S", "djw", "-D", "-f", "-e", "-s"])
            .arg(&pair.old)
            .arg(&pair.new)
            .arg(out("x.vcdiff")),
    )
    .and_then(|_| size(&out("x.vcdiff")));
    row.zstd_patch = timed(
        Command::new("zstd")
            .args(["-q", "-f", "-19", "--long=27", "--patch-from"])
            .arg(&pair.old)
            .arg(&pair.new)
            .arg("-o")
            .arg(out("p.zst")),
    )
    .and_then(|_| size(&out("p.zst")));
    row.bsdiff = timed(Command::new("bsdiff").arg(&pair.old).arg(&pair.new).arg(out("b.patch")))
        .and_then(|_| size(&out("b.patch")));
    row.zstd19 =
        timed(Command::new("zstd").args(["-q", "-f", "-19", "--long=27"]).arg(&pair.new).arg("-o").arg(out("n.zst")))
            .and_then(|_| size(&out("n.zst")));
    // Keep the disk use bounded: only the figures are needed from here on.
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&served);
    Ok(row)
}

/// Writes a release of `files` (copied flat, with unique names) and returns its manifest.
fn write_release(dir: &Path, id: &str, version: &str, files: &[(String, PathBuf)]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("firmware"))?;
    let mut m = format!("[release]\nid = \"{id}\"\nname = \"bench {id}\"\ndate = \"2024-01-01\"\n");
    for (flat, src) in files {
        std::fs::copy(src, dir.join("firmware").join(flat))?;
        m.push_str(&format!(
            "\n[[component]]\nfile = \"firmware/{flat}\"\nname = \"{flat}\"\nkind = \"firmware\"\nversion = \"{version}\"\nmodels = [\"Bench Server\"]\n"
        ));
    }
    let path = dir.join("release.toml");
    std::fs::write(&path, m)?;
    Ok(path)
}

/// The real pairs: per package, its changed files of at least [`MIN_FILE`] bytes, published as
/// two releases (old, new) under flat unique names. Returns (package, release ids, files).
#[allow(clippy::type_complexity)]
fn real_pairs() -> Result<Vec<(String, [String; 2], Vec<(String, PathBuf, PathBuf)>)>> {
    let real = root().join("testdata/real");
    let mut out = Vec::new();
    for (n, pkg) in ["ovmf", "grub-efi-amd64-bin"].into_iter().enumerate() {
        let vers: Vec<&str> = REAL.iter().filter(|(p, _)| *p == pkg).map(|(_, v)| *v).collect();
        let [old_v, new_v] = vers[..] else { bail!("{pkg}: expected two versions in REAL") };
        let (old_dir, new_dir) = (real.join(format!("{pkg}_{old_v}")), real.join(format!("{pkg}_{new_v}")));
        let mut files = Vec::new();
        for new in files_under(&new_dir)? {
            let rel = new.strip_prefix(&new_dir)?.to_owned();
            let old = old_dir.join(&rel);
            if !old.is_file() || std::fs::metadata(&new)?.len() < MIN_FILE {
                continue;
            }
            if std::fs::read(&old)? == std::fs::read(&new)? {
                continue;
            }
            let base = rel.file_name().context("file name")?.to_string_lossy();
            files.push((format!("f{:03}-{base}", files.len()), old, new));
        }
        let ids = [format!("2024.{:02}.0", 2 * n + 1), format!("2024.{:02}.0", 2 * n + 2)];
        out.push((format!("{pkg} {old_v} -> {new_v}"), ids, files));
    }
    Ok(out)
}

pub fn run() -> Result<()> {
    let real = root().join("testdata/real");
    let synthetic = root().join("testdata/synthetic");
    if !real.is_dir() || !synthetic.is_dir() {
        bail!("no test data: run `cargo xtask testdata` first");
    }
    let wanted = [
        ("nginx", "nginx"),
        ("curl", "curl"),
        ("zsync", "zsync"),
        ("zck", "zchunk"),
        ("xdelta3", "xdelta3"),
        ("bsdiff", "bsdiff"),
        ("zstd", "zstd"),
        ("/usr/bin/time", "time"),
    ];
    let missing: Vec<&str> = wanted.iter().filter(|(c, _)| !have(c)).map(|(_, p)| *p).collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    cargo(&["build", "--release", "-p", "fwrepo", "-p", "fwget"], &[])?;
    let tmp = std::env::temp_dir().join(format!("fwrepo-bench-delta-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = bench(&target_dir().join("release"), &tmp, &synthetic);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench(bin: &Path, tmp: &Path, synthetic: &Path) -> Result<()> {
    let started = Instant::now();
    // Releases: the real pairs as two releases each, then the synthetic series as it is.
    let real = real_pairs()?;
    let mut manifests = Vec::new();
    for (_, ids, files) in &real {
        let olds: Vec<_> = files.iter().map(|(f, o, _)| (f.clone(), o.clone())).collect();
        let news: Vec<_> = files.iter().map(|(f, _, n)| (f.clone(), n.clone())).collect();
        manifests.push(write_release(&tmp.join("rel").join(&ids[0]), &ids[0], "1", &olds)?);
        manifests.push(write_release(&tmp.join("rel").join(&ids[1]), &ids[1], "2", &news)?);
    }
    let mut series: Vec<PathBuf> =
        std::fs::read_dir(synthetic)?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    series.sort();
    manifests.extend(series.iter().map(|r| r.join("release.toml")));
    let origin = Origin::start(&bin.join("fwrepo"), &bin.join("fwget"), tmp, &manifests)?;
    let nginx = Nginx::start(tmp)?;

    let mut groups = Vec::new();
    for (name, ids, files) in &real {
        let pairs = files
            .iter()
            .map(|(f, o, n)| Pair { old: o.clone(), new: n.clone(), target: format!("{}/{f}", ids[1]) })
            .collect();
        groups.push(Group { name: name.clone(), pairs });
    }
    for w in series.windows(2) {
        let id = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (old_id, new_id) = (id(&w[0]), id(&w[1]));
        let old = origin.components(&old_id)?;
        let mut pairs = Vec::new();
        for (target, component) in origin.components(&new_id)? {
            let Some((old_target, _)) = old.iter().find(|(_, c)| *c == component) else { continue };
            let file = |dir: &Path, t: &str| dir.join("firmware").join(t.rsplit('/').next().unwrap_or(t));
            let (o, n) = (file(&w[0], old_target), file(&w[1], &target));
            if std::fs::metadata(&n)?.len() < MIN_FILE || std::fs::read(&o)? == std::fs::read(&n)? {
                continue;
            }
            pairs.push(Pair { old: o, new: n, target });
        }
        groups.push(Group { name: format!("SPP {old_id} -> {new_id}"), pairs });
    }

    println!(
        "\nchunker {}/{}/{} bytes; metadata: a first full refresh cost {} bytes, each fetch then re-reads timestamp.json ({} bytes)",
        origin.params.min_size,
        origin.params.avg_size,
        origin.params.max_size,
        origin.refresh_wire,
        origin.timestamp_len
    );
    if !origin.no_deltas_flag {
        println!("fwget fetch has no --no-deltas flag: one fwget column");
    }
    let work = tmp.join("work");
    let mut n = 0;
    let mut rows = Vec::new();
    let (mut over_block, mut over_zstd, mut block_files) = (Vec::new(), Vec::new(), 0);
    for g in &groups {
        println!("measuring {} ({} changed files) …", g.name, g.pairs.len());
        let mut sum = Row::zero(origin.no_deltas_flag);
        for p in &g.pairs {
            let r = measure(&origin, &nginx, &work, n, p)?;
            n += 1;
            if r.full > 64 * 1024 {
                block_files += 1;
                if r.min_block().is_none_or(|b| r.fwget.wire >= b) {
                    over_block.push(format!("{} ({} vs {})", p.target, r.fwget.wire, cell(r.min_block())));
                }
            }
            if r.zstd19.is_none_or(|z| r.fwget.wire as f64 > 1.05 * z as f64 + 1024.0) {
                over_zstd.push(format!("{} ({} vs {})", p.target, r.fwget.wire, cell(r.zstd19)));
            }
            sum.add(&r);
        }
        rows.push((g.name.clone(), sum));
    }

    let mut all = Row::zero(origin.no_deltas_flag);
    for (_, r) in &rows {
        all.add(r);
    }
    rows.push(("all pairs".into(), all));

    println!();
    for (name, r) in &rows {
        println!("{name}: {} changed files, {} bytes", r.files, r.full);
        let delta = r.fwget.delta_bytes.map_or(String::new(), |d| format!(", delta_bytes {d}"));
        println!(
            "  fwget            {:>11} bytes in {} requests ({} file requests for {} runs of missing chunks: {}){delta}",
            r.fwget.wire,
            r.fwget.requests,
            r.fwget.file_requests,
            r.runs,
            if r.fwget.file_requests.saturating_sub(r.files) <= r.runs { "ranges <= runs" } else { "ranges > runs" }
        );
        if let Some(nd) = r.no_deltas {
            println!("  fwget --no-deltas{:>11} bytes in {} requests", nd.wire, nd.requests);
        }
        println!("  chunk ideal      {:>11} bytes ({} of new chunks + indexes + timestamp)", r.ideal, r.new_chunks);
        println!("  zsync            {:>11}", cell(r.zsync));
        println!("  zchunk           {:>11}", cell(r.zchunk));
        println!("  xdelta3 -9 -D    {:>11}", cell(r.xdelta3));
        println!("  zstd patch-from  {:>11}", cell(r.zstd_patch));
        println!("  bsdiff           {:>11}", cell(r.bsdiff));
        println!("  zstd -19 alone   {:>11}", cell(r.zstd19));
        println!(
            "  fwget/ideal {}  fwget/zsync {}  fwget/zchunk {}  fwget/min-static-delta {}  fwget/(zstd -19 + 1 KB) {}",
            ratio(r.fwget.wire, Some(r.ideal)),
            ratio(r.fwget.wire, r.zsync),
            ratio(r.fwget.wire, r.zchunk),
            ratio(r.fwget.wire, r.min_static()),
            ratio(r.fwget.wire, r.zstd19.map(|z| z + 1024 * r.files)),
        );
    }

    let package_rows = &rows[..rows.len() - 1];
    let worst = |f: &dyn Fn(&Row) -> Option<f64>| package_rows.iter().filter_map(|(_, r)| f(r)).fold(0.0f64, f64::max);
    let worst_block = worst(&|r| r.min_block().map(|b| r.fwget.wire as f64 / b as f64));
    let worst_ideal = worst(&|r| Some(r.fwget.wire as f64 / r.ideal as f64));
    let all = &rows[rows.len() - 1].1;
    let cpu_per_mb = all.fwget.cpu_s / (all.seed_bytes as f64 / 1e6);
    println!(
        "\nclient CPU: {:.3} s per MB of seed (whole fetch processes, user + system: an upper bound on the scan)",
        cpu_per_mb
    );
    println!(
        "files over 64 KiB where fwget >= min(zsync, zchunk): {} of {block_files}{}",
        over_block.len(),
        some(&over_block)
    );
    println!("files where fwget > 1.05 x zstd -19 + 1 KB: {} of {}{}", over_zstd.len(), all.files, some(&over_zstd));
    // What the deltas cost the server, from its own counters over the whole run.
    let m = origin.delta_metrics()?;
    let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
    let (computed, compute_s) =
        (get("fwrepo_delta_computations_total"), get("fwrepo_delta_compute_microseconds_total") / 1e6);
    println!(
        "server: {} delta entries answered: {} precomputed by publish, {} from the cache, {} compressed on demand in {compute_s:.2} s of compression = {} deltas/s per core at the on-demand level",
        get("fwrepo_delta_entries_total"),
        get("fwrepo_delta_precomputed_total"),
        get("fwrepo_delta_cache_hits_total"),
        computed,
        if compute_s > 0.0 { format!("{:.0}", computed / compute_s) } else { "-".into() },
    );
    println!("publish: {:.1} s for every release, precomputed deltas included", origin.publish_s);
    println!("run took {:.0} s", started.elapsed().as_secs_f64());
    println!("delta: worst fwget/min(zsync,zchunk) = {worst_block:.2}, worst fwget/ideal = {worst_ideal:.2}");
    Ok(())
}
