//! `cargo xtask bench mirror`: a partner mirror's sync on loopback against the bytes it truly
//! lacked, against `fwrepo ingest` of the same bytes, and against rsync over the origin's export.
//!
//! One origin (`fwrepo serve --keys`) and one mirror data dir (`fwrepo mirror init | sync`) on
//! this machine, with the synthetic SPP series of `cargo xtask testdata`: the first release is
//! synced into an empty mirror (MB/s, beside `fwrepo ingest` of the same files), then each
//! further release is published and synced. The ideal of a sync is computed here, not taken
//! from the sync's report: every release is exported (`fwrepo export`), the target files new in
//! an export are chunked with the repository's chunker sizes, and the chunks no earlier export
//! held are what the mirror truly lacked; the metadata files new or changed in the export are
//! the metadata it must fetch. Then the same updates go through rsync (`-a --fuzzy --stats`)
//! from a loopback `rsync --daemon` over the exports into a copy that holds the previous one,
//! and once more with the previous release's files placed where --fuzzy looks for a basis.

use std::collections::{BTreeMap, HashSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fwrepo_chunk::{Chunker, ChunkerParams, Digest};
use serde_json::Value;

use crate::bench_serve::{Guard, free_port};
use crate::dedup::files_under;
use crate::demo::{http, spawn_server};
use crate::{apt_install, cargo, root, run_capture, target_dir};

const PARTNER_SECRET: &str = "bench-mirror-partner-credential";
/// Bytes of a chunk index: magic, blob length, count, then 36 bytes per chunk.
const INDEX_HEADER: u64 = 20;
const INDEX_ENTRY: u64 = 36;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The `fwrepo` release binary.
struct Fwrepo(PathBuf);

impl Fwrepo {
    fn run(&self, args: &[&str]) -> Result<String> {
        run_capture(Command::new(&self.0).args(args))
    }

    /// Runs and times `args`: (stdout, wall seconds).
    fn timed(&self, args: &[&str]) -> Result<(String, f64)> {
        let t = Instant::now();
        let out = self.run(args)?;
        Ok((out, t.elapsed().as_secs_f64()))
    }

    fn sync(&self, mirror: &str) -> Result<(Value, f64)> {
        let (out, secs) = self.timed(&["mirror", "sync", "--data", mirror, "--json"])?;
        Ok((serde_json::from_str(out.trim()).with_context(|| format!("sync --json printed {out:?}"))?, secs))
    }
}

fn field(v: &Value, key: &str) -> Result<u64> {
    v[key].as_u64().with_context(|| format!("no {key} in {v}"))
}

fn timestamp(base: &str) -> Result<Vec<u8>> {
    let (status, body) = http("GET", &format!("{base}/metadata/timestamp.json"), &[], None)?;
    if status != 200 {
        bail!("GET {base}/metadata/timestamp.json answered {status}");
    }
    Ok(body)
}

/// Runs `f` (a write at the origin's data dir) and waits until the origin serves its result.
fn changing(base: &str, f: impl FnOnce() -> Result<String>) -> Result<()> {
    let before = timestamp(base)?;
    f()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while timestamp(base)? == before {
        if Instant::now() > deadline {
            bail!("the origin did not serve the new metadata within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The releases of the synthetic series, oldest first: (id, directory).
fn series() -> Result<Vec<(String, PathBuf)>> {
    let dir = root().join("testdata/synthetic");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: run `cargo xtask testdata` first", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("release.toml").is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    if out.len() < 2 {
        bail!("{} holds {} releases; run `cargo xtask testdata`", dir.display(), out.len());
    }
    Ok(out)
}

/// What one export holds: target files by path under `targets/`, metadata files by name.
struct Export {
    dir: PathBuf,
    targets: BTreeMap<String, PathBuf>,
    metadata: BTreeMap<String, Vec<u8>>,
}

impl Export {
    fn read(dir: &Path) -> Result<Export> {
        let dir = std::fs::canonicalize(dir)?;
        let mut targets = BTreeMap::new();
        let tdir = dir.join("targets");
        for f in files_under(&tdir)? {
            targets.insert(f.strip_prefix(&tdir)?.to_string_lossy().into_owned(), f);
        }
        let mut metadata = BTreeMap::new();
        for f in files_under(&dir.join("metadata"))? {
            metadata.insert(f.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f)?);
        }
        Ok(Export { dir, targets, metadata })
    }

    /// Bytes of the metadata files new or changed since `prev` (all but the pinned root when
    /// there is none).
    fn metadata_delta(&self, prev: Option<&Export>) -> u64 {
        self.metadata
            .iter()
            .filter(|(name, bytes)| match prev {
                Some(p) => p.metadata.get(*name) != Some(*bytes),
                None => name.as_str() != "1.root.json",
            })
            .map(|(_, b)| b.len() as u64)
            .sum()
    }
}

/// The chunks and target contents every earlier export held, and what a new export adds.
struct Ledger {
    chunker: Chunker,
    held: HashSet<Digest>,
    /// SHA-256 of every target file seen (the prefix of its consistent-snapshot name).
    blobs: HashSet<String>,
}

/// What the target files new in one export need.
#[derive(Default)]
struct Lacked {
    /// Target contents no earlier export had, and their bytes.
    files: u64,
    file_bytes: u64,
    chunk_bytes: u64,
    /// Chunk indexes of those contents: what a sync fetches before their chunks.
    index_bytes: u64,
}

/// `<sha256>.<name>` → (sha256, name).
fn split_target_name(path: &Path) -> Result<(String, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).with_context(|| path.display().to_string())?;
    let (sha, rest) = name.split_once('.').with_context(|| format!("{name}: not <sha256>.<name>"))?;
    Ok((sha.to_owned(), rest.to_owned()))
}

impl Ledger {
    /// Chunks the target contents of `export` no earlier export had; counts the chunks no
    /// earlier export held (each once), then holds them.
    fn add(&mut self, export: &Export) -> Result<Lacked> {
        let mut l = Lacked::default();
        for file in export.targets.values() {
            // Target files are named by their SHA-256: the same prefix is the same bytes.
            if !self.blobs.insert(split_target_name(file)?.0) {
                continue;
            }
            let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
            l.files += 1;
            l.file_bytes += bytes.len() as u64;
            let mut n = 0;
            for r in self.chunker.chunks(&bytes) {
                n += 1;
                let id = Digest::of(&bytes[r.clone()]);
                if self.held.insert(id) {
                    l.chunk_bytes += r.len() as u64;
                }
            }
            l.index_bytes += INDEX_HEADER + INDEX_ENTRY * n;
        }
        Ok(l)
    }
}

/// The component a synthetic file name belongs to across releases: `cp020014-r2.scexe` and
/// `cp020014.scexe` are both `cp020014`.
fn component_key(name: &str) -> &str {
    name.split(['-', '.']).next().unwrap_or(name)
}

/// One incremental sync's figures.
struct Incremental {
    release: String,
    lacked: Lacked,
    metadata: u64,
    wire: u64,
    requests: u64,
    reported_chunk_bytes: u64,
}

impl Incremental {
    fn ideal(&self) -> u64 {
        self.lacked.chunk_bytes + self.metadata
    }
    fn ratio(&self) -> f64 {
        self.wire as f64 / self.ideal() as f64
    }
}

pub fn run() -> Result<()> {
    for (cmd, pkg) in [("rsync", "rsync"), ("curl", "curl")] {
        if !Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().is_ok_and(|o| o.status.success()) {
            apt_install(&[pkg])?;
        }
    }
    let releases = series()?;
    // The demo's build: one package set, so cargo's feature unification gives one set of
    // artifacts for both (building `-p fwrepo` alone would rebuild the TLS stack).
    cargo(&["build", "--release", "-p", "fwrepo", "-p", "fwget"], &[])?;
    let tmp = std::env::temp_dir().join(format!("fwrepo-bench-mirror-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = bench(&Fwrepo(target_dir().join("release/fwrepo")), &tmp, &releases);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench(fw: &Fwrepo, tmp: &Path, releases: &[(String, PathBuf)]) -> Result<()> {
    let p = |x: &str| tmp.join(x).display().to_string();
    let (origin, keys, mirror) = (p("origin"), p("keys"), p("mirror"));
    let exports = tmp.join("exports");
    std::fs::create_dir_all(&exports)?;

    // The origin: keys, a signed repository, a partner that may mirror every model.
    fw.run(&["keys", "generate", "--out", &keys])?;
    fw.run(&["keys", "rotate-issuer", "--keys", &keys])?;
    fw.run(&["init", "--data", &origin, "--keys", &keys])?;
    let secret_sha = run_capture(Command::new("sh").arg("-c").arg(format!("printf %s {PARTNER_SECRET} | sha256sum")))?;
    let partners = tmp.join("partners.csv");
    std::fs::write(
        &partners,
        format!(
            "partner,name,level,status,models,may_mirror,credential_sha256\nP-BENCH,Bench Mirror,authorized,active,*,true,{}\n",
            secret_sha.split_whitespace().next().context("sha256sum output")?
        ),
    )?;
    fw.run(&["entitlements", "import", "--data", &origin, &partners.display().to_string()])?;
    fw.run(&["auth", "publish", "--data", &origin, "--keys", &keys])?;
    let (_origin_server, base) = spawn_server(
        &fw.0,
        &["serve", "--data", &origin, "--keys", &keys, "--listen", "127.0.0.1:0", "--refresh-secs", "1"],
    )?;
    let params: Value = serde_json::from_slice(&std::fs::read(tmp.join("origin/fwrepo.json"))?)?;
    let params: ChunkerParams = serde_json::from_value(params["chunk_sizes"].clone()).context("chunk_sizes")?;
    println!("origin {base}; chunk sizes {}/{}/{} bytes", params.min_size, params.avg_size, params.max_size);

    let publish = |id: &str, dir: &Path| -> Result<Export> {
        let manifest = dir.join("release.toml").display().to_string();
        changing(&base, || fw.run(&["publish", "--data", &origin, "--keys", &keys, &manifest]))?;
        let out = exports.join(id);
        fw.run(&["export", "--data", &origin, "--out", &out.display().to_string()])?;
        Export::read(&out)
    };

    // 1. The first release into an empty mirror, and the same files through `fwrepo ingest`.
    let (first_id, first_dir) = &releases[0];
    let first = publish(first_id, first_dir)?;
    let (status, root_json) = http("GET", &format!("{base}/metadata/1.root.json"), &[], None)?;
    if status != 200 {
        bail!("GET /metadata/1.root.json answered {status}");
    }
    std::fs::write(tmp.join("1.root.json"), root_json)?;
    let cred = tmp.join("partner.credential");
    std::fs::write(&cred, format!("{PARTNER_SECRET}\n"))?;
    std::fs::set_permissions(&cred, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    fw.run(&[
        "mirror",
        "init",
        "--data",
        &mirror,
        "--upstream",
        &base,
        "--root",
        &p("1.root.json"),
        "--credential-file",
        &cred.display().to_string(),
    ])?;
    let mut ledger = Ledger { chunker: Chunker::new(params), held: HashSet::new(), blobs: HashSet::new() };
    let initial_lacked = ledger.add(&first)?;
    let initial_metadata = first.metadata_delta(None);
    let (r, secs) = fw.sync(&mirror)?;
    let synced = field(&r, "chunk_bytes_fetched")?;
    let wire = field(&r, "wire_bytes")?;
    println!("\n1. initial sync of {first_id} into an empty mirror");
    println!(
        "   mirror sync:   {:.1} MB of chunks ({} targets) in {secs:.2} s = {:.1} MB/s; wire {:.1} MB in {} requests",
        mb(synced),
        field(&r, "targets_new")?,
        mb(synced) / secs,
        mb(wire),
        field(&r, "requests")?
    );
    println!(
        "   ideal:         {:.1} MB of distinct chunks + {} bytes of metadata; wire/ideal = {:.4}",
        mb(initial_lacked.chunk_bytes),
        initial_metadata,
        wire as f64 / (initial_lacked.chunk_bytes + initial_metadata) as f64
    );
    let files: Vec<String> = files_under(first_dir)?
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "release.toml"))
        .map(|f| f.display().to_string())
        .collect();
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum();
    fw.run(&["init", "--data", &p("ingest")])?;
    let mut args = vec!["ingest", "--data", &p("ingest")].into_iter().map(str::to_owned).collect::<Vec<_>>();
    args.extend(files);
    let (_, ingest_secs) = fw.timed(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    println!(
        "   fwrepo ingest: {:.1} MB of the same files in {ingest_secs:.2} s = {:.1} MB/s; sync/ingest = {:.2}",
        mb(bytes),
        mb(bytes) / ingest_secs,
        (mb(synced) / secs) / (mb(bytes) / ingest_secs)
    );

    // 2. Each further release: publish, export, sync.
    let mut incrementals = Vec::new();
    let mut all_exports = vec![first];
    for (id, dir) in &releases[1..] {
        let export = publish(id, dir)?;
        let prev = all_exports.last();
        let lacked = ledger.add(&export)?;
        let metadata = export.metadata_delta(prev);
        let (r, _) = fw.sync(&mirror)?;
        incrementals.push(Incremental {
            release: id.clone(),
            lacked,
            metadata,
            wire: field(&r, "wire_bytes")?,
            requests: field(&r, "requests")?,
            reported_chunk_bytes: field(&r, "chunk_bytes_fetched")?,
        });
        all_exports.push(export);
    }
    println!("\n2. incremental syncs (bytes; ideal = chunks the mirror lacked + new metadata)");
    println!(
        "   {:<11} {:>5} {:>9} {:>9} {:>8} {:>9} {:>9} {:>10} {:>8} {:>8} {:>11}",
        "release",
        "files",
        "bytes",
        "lacked",
        "metadata",
        "ideal",
        "wire",
        "wire/ideal",
        "requests",
        "indexes",
        "sync chunks"
    );
    for i in &incrementals {
        println!(
            "   {:<11} {:>5} {:>9} {:>9} {:>8} {:>9} {:>9} {:>10.4} {:>8} {:>8} {:>11}",
            i.release,
            i.lacked.files,
            i.lacked.file_bytes,
            i.lacked.chunk_bytes,
            i.metadata,
            i.ideal(),
            i.wire,
            i.ratio(),
            i.requests,
            i.lacked.index_bytes,
            i.reported_chunk_bytes
        );
    }
    println!("   (files, bytes: target contents no earlier export had; lacked: their chunks no earlier export held)");
    println!("   (indexes: the chunk indexes of the new targets; sync chunks: chunk bytes the sync reports)");

    // 4 (run now, while the origin is still up). Nothing changed upstream.
    let (r, _) = fw.sync(&mirror)?;
    let unchanged = field(&r, "wire_bytes")?;
    let unchanged_requests = field(&r, "requests")?;

    // 3. The same updates by rsync from a loopback daemon over the exports.
    let rsync = Rsync::start(tmp, &all_exports)?;
    let copy = tmp.join("rsync-copy");
    let initial_rsync = rsync.pull(0, &copy, &[])?;
    println!("\n3. rsync -a --fuzzy --stats from a loopback rsync --daemon over each export");
    println!("   initial {first_id}: received {} bytes, sent {}", initial_rsync.0, initial_rsync.1);
    let mut plain = Vec::new();
    for n in 1..all_exports.len() {
        plain.push(rsync.pull(n, &copy, &[])?);
    }
    // The same with --fuzzy given a basis: the new release's files are new names in a new
    // directory, where --fuzzy finds nothing; here the receiver first links the previous
    // release's files into that directory (and drops them afterwards with --delete-after).
    let seeded = tmp.join("rsync-seeded");
    rsync.pull(0, &seeded, &[])?;
    let mut helped = Vec::new();
    for n in 1..all_exports.len() {
        let (prev_id, new_id) = (&releases[n - 1].0, &releases[n].0);
        let (from, to) = (seeded.join("targets").join(prev_id), seeded.join("targets").join(new_id));
        std::fs::create_dir_all(&to)?;
        for f in files_under(&from)? {
            std::fs::hard_link(&f, to.join(f.file_name().unwrap()))?;
        }
        helped.push(rsync.pull(n, &seeded, &["--delete-after"])?);
    }
    // The best rsync can do: each new file's own previous version linked in under the new
    // name (what a partner's script would have to know), so rsync deltas against the right
    // basis without --fuzzy having to guess.
    let oracle = tmp.join("rsync-oracle");
    rsync.pull(0, &oracle, &[])?;
    let mut best = Vec::new();
    for n in 1..all_exports.len() {
        let (prev_id, new_id) = (&releases[n - 1].0, &releases[n].0);
        let (from, to) = (oracle.join("targets").join(prev_id), oracle.join("targets").join(new_id));
        std::fs::create_dir_all(&to)?;
        let mut old = BTreeMap::new();
        for f in files_under(&from)? {
            old.insert(component_key(&split_target_name(&f)?.1).to_owned(), f);
        }
        for path in all_exports[n].targets.keys().filter(|p| p.starts_with(&format!("{new_id}/"))) {
            let path = Path::new(path);
            let name = split_target_name(path)?.1;
            if let Some(f) = old.get(component_key(&name)) {
                std::fs::hard_link(f, to.join(path.file_name().unwrap()))?;
            }
        }
        best.push(rsync.pull(n, &oracle, &[])?);
    }
    println!(
        "   {:<11} {:>9} {:>9} {:>7} {:>9} {:>7} {:>9} {:>7} {:>9}",
        "release", "fwrepo", "plain", "ratio", "fuzzy", "ratio", "oracle", "ratio", "oracle tx"
    );
    let mut worst_rsync: f64 = 0.0;
    for (((i, a), b), c) in incrementals.iter().zip(&plain).zip(&helped).zip(&best) {
        let r = |x: &(u64, u64)| i.wire as f64 / x.0 as f64;
        worst_rsync = worst_rsync.max(r(a)).max(r(b)).max(r(c));
        println!(
            "   {:<11} {:>9} {:>9} {:>7.4} {:>9} {:>7.4} {:>9} {:>7.4} {:>9}",
            i.release,
            i.wire,
            a.0,
            r(a),
            b.0,
            r(b),
            c.0,
            r(c),
            c.1
        );
    }
    println!("   (fwrepo: sync wire bytes; plain, fuzzy, oracle: bytes rsync received; ratio: fwrepo/rsync)");
    println!("   (plain: the command above; fuzzy: the previous release's files linked into the new");
    println!("    release's directory first, for --fuzzy to choose from; oracle: each file's previous");
    println!("    version linked in under its new name; oracle tx: bytes rsync sent, its block checksums)");

    println!("\n4. unchanged upstream: {unchanged} bytes on the wire in {unchanged_requests} requests (target < 2048)");
    let worst_ideal = incrementals.iter().map(Incremental::ratio).fold(0.0, f64::max);
    println!("\nmirror: worst wire/ideal = {worst_ideal:.4}, worst fwrepo/rsync = {worst_rsync:.4}");
    Ok(())
}

/// A loopback `rsync --daemon` with one read-only module per export (`r0`, `r1`, …).
struct Rsync {
    port: u16,
    _daemon: Guard,
}

impl Rsync {
    fn start(tmp: &Path, exports: &[Export]) -> Result<Rsync> {
        let port = free_port()?;
        let id = |flag: &str| run_capture(Command::new("id").arg(flag)).map(|s| s.trim().to_owned());
        let mut conf = format!(
            "pid file = {tmp}/rsyncd.pid\nlog file = {tmp}/rsyncd.log\nuse chroot = no\naddress = 127.0.0.1\n\
             port = {port}\nuid = {}\ngid = {}\n",
            id("-u")?,
            id("-g")?,
            tmp = tmp.display()
        );
        for (n, e) in exports.iter().enumerate() {
            conf.push_str(&format!("[r{n}]\n    path = {}\n    read only = yes\n", e.dir.display()));
        }
        let path = tmp.join("rsyncd.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rsync --daemon")?;
        let daemon = Guard(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("rsync --daemon did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Rsync { port, _daemon: daemon })
    }

    /// `rsync -a --fuzzy --stats EXTRA rsync://…/rN/ DEST/`: (bytes received, bytes sent).
    fn pull(&self, n: usize, dest: &Path, extra: &[&str]) -> Result<(u64, u64)> {
        let out = run_capture(
            Command::new("rsync")
                .args(["-a", "--fuzzy", "--stats"])
                .args(extra)
                .arg(format!("rsync://127.0.0.1:{}/r{n}/", self.port))
                .arg(format!("{}/", dest.display())),
        )?;
        Ok((stats_total(&out, "Total bytes received:")?, stats_total(&out, "Total bytes sent:")?))
    }
}

/// A `Total …:` figure of `rsync --stats` output (digits grouped with commas).
fn stats_total(out: &str, name: &str) -> Result<u64> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .with_context(|| format!("no {name:?} in rsync --stats:\n{out}"))?;
    Ok(line.trim().replace(',', "").parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_totals_are_read_with_their_commas() {
        let out = "Total file size: 163,136,801 bytes\nTotal bytes sent: 652,584\nTotal bytes received: 3,908,307\n";
        assert_eq!(stats_total(out, "Total bytes received:").unwrap(), 3_908_307);
        assert_eq!(stats_total(out, "Total bytes sent:").unwrap(), 652_584);
        assert!(stats_total("sent 10 bytes", "Total bytes sent:").is_err());
    }

    #[test]
    fn target_names_split_into_hash_and_component() {
        let (sha, name) = split_target_name(Path::new("targets/2015.03.0/ab12.cp020014-r2.scexe")).unwrap();
        assert_eq!((sha.as_str(), name.as_str()), ("ab12", "cp020014-r2.scexe"));
        assert_eq!(component_key(&name), component_key("cp020014.scexe"));
        assert_ne!(component_key("cp020014.scexe"), component_key("cp020021.scexe"));
        assert!(split_target_name(Path::new("targets/noprefix")).is_err());
    }

    /// Chunks shared by two new contents, or held by an earlier export, count once.
    #[test]
    fn the_ledger_counts_each_lacked_chunk_once() {
        let dir = std::env::temp_dir().join(format!("fwrepo-bench-mirror-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let params = ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024 };
        // xorshift64: no repeats within the file, so every chunk of it is distinct.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let data: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join("targets/r").join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let a = write("aa.one.bin", &data);
        let b = write("bb.two.bin", &data); // the same chunks under another content name
        let export = Export {
            dir: dir.clone(),
            targets: [("r/aa.one.bin".into(), a), ("r/bb.two.bin".into(), b)].into(),
            metadata: BTreeMap::new(),
        };
        let mut ledger = Ledger { chunker: Chunker::new(params), held: HashSet::new(), blobs: HashSet::new() };
        let l = ledger.add(&export).unwrap();
        assert_eq!((l.files, l.file_bytes, l.chunk_bytes), (2, 40_000, 20_000));
        // The next export holds the same contents and one new file that changes a tail.
        let mut changed = data.clone();
        changed.extend_from_slice(b"a new tail");
        let c = write("cc.one.bin", &changed);
        let mut next = export;
        next.targets.insert("r2/cc.one.bin".into(), c);
        let l = ledger.add(&next).unwrap();
        assert_eq!(l.files, 1);
        assert!(l.chunk_bytes > 0 && l.chunk_bytes < 2048, "only the last chunk is new: {}", l.chunk_bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metadata_delta_counts_new_and_changed_files_only() {
        let meta = |files: &[(&str, &[u8])]| files.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
        let export =
            |files: &[(&str, &[u8])]| Export { dir: PathBuf::new(), targets: BTreeMap::new(), metadata: meta(files) };
        let first = export(&[("1.root.json", b"root"), ("timestamp.json", b"t1"), ("3.targets.json", b"targets")]);
        assert_eq!(first.metadata_delta(None), 2 + 7, "everything but the pinned root");
        let second = export(&[
            ("1.root.json", b"root"),
            ("timestamp.json", b"t2"),
            ("3.targets.json", b"targets"),
            ("4.targets.json", b"four"),
        ]);
        assert_eq!(second.metadata_delta(Some(&first)), 2 + 4);
    }
}
