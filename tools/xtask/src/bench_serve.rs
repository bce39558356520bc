//! `cargo xtask bench serve [--runs N] [--seconds S] [--load NAME]…`: fwrepo against nginx
//! serving the same firmware bytes on loopback, measured by CPU per request as well as by
//! throughput. `--load` (repeatable) keeps only the loads whose names contain NAME.
//!
//! Each server gets core 0 (`taskset`; nginx with one worker process, fwrepo with one runtime
//! thread) and wrk gets core 1. fwrepo runs as the product does: a bearer token checked on every
//! request and the audit log written, with the per-address connection cap raised so 1,000
//! loopback connections are not refused. nginx keeps the same record of every request: an
//! access log, buffered as fwrepo buffers its audit log (64 KiB, flushed every 50 ms).
//! nginx serves the same bytes as plain files in several
//! standard configurations (`tcp_nopush`, `sendfile_max_chunk`, `aio threads`,
//! `open_file_cache`). Both serve TLS with the same self-signed certificate made here (fwrepo:
//! rustls; nginx: OpenSSL).
//!
//! Before either server starts, every file of both (fwrepo's packs and database, nginx's plain
//! files) is flushed, dropped from the page cache and read once, and the bench prints how much
//! of each stayed resident: the kernel's cost per request depends on how the pages it sends
//! came into the cache, so both start from the same state.
//!
//! A choosing round runs every load once against nginx in each configuration and picks, per
//! load, nginx's best for CPU per request and for throughput (named in the output). Then
//! `--runs` measuring rounds: on each load fwrepo and nginx in the chosen configurations take
//! turns, in an order that flips every round. The comparison uses the measuring rounds only,
//! since the lowest of five noisy samples is lower than what that configuration does: each
//! ratio takes whichever of the measured nginx configurations has the better median (the one
//! picked for throughput may turn out the cheaper per request), and names it.
//!
//! For every load and server: requests/s, GB/s, server CPU time per request and per MB (utime +
//! stime from `/proc/<pid>/stat` of fwrepo or of nginx's worker, before and after the load),
//! how core 0 spent it per request (user mode, kernel, softirq: its line of `/proc/stat`; only
//! the servers run there), and the share of its core wrk used (near 100%: wrk, not the server,
//! was the limit). CPU per request is what to compare on a shared machine; throughput swings
//! with the other load on it.
//! The last line is the worst CPU-per-request ratio (nginx ÷ fwrepo; ≥ 1.0 means fwrepo spends
//! no more than nginx) and the worst throughput ratio (fwrepo ÷ nginx).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{apt_install, cargo, run_capture, target_dir};

const BLOBS: usize = 128;
const BLOB_LEN: usize = 8 << 20;
const MODEL: &str = "ProLiant DL380 Gen10";
/// wrk at or above this share of its core was the bottleneck, not the server.
const WRK_BOUND: f64 = 0.9;

/// One load: what each request asks for and how many connections carry it.
struct Load {
    name: &'static str,
    /// Ranges per request; 0 asks for the whole blob.
    ranges: usize,
    range_len: usize,
    /// Range starts on multiples of `range_len`.
    aligned: bool,
    connections: u32,
    tls: bool,
}

const LOADS: &[Load] = &[
    Load { name: "64 KiB ranges, aligned", ranges: 1, range_len: 64 << 10, aligned: true, connections: 64, tls: false },
    Load {
        name: "64 KiB ranges, unaligned",
        ranges: 1,
        range_len: 64 << 10,
        aligned: false,
        connections: 64,
        tls: false,
    },
    Load { name: "whole 8 MiB blobs", ranges: 0, range_len: 0, aligned: false, connections: 16, tls: false },
    Load {
        name: "8 ranges of 4 KiB (multipart)",
        ranges: 8,
        range_len: 4 << 10,
        aligned: false,
        connections: 64,
        tls: false,
    },
    Load { name: "64 KiB unaligned, TLS", ranges: 1, range_len: 64 << 10, aligned: false, connections: 64, tls: true },
    Load {
        name: "64 KiB unaligned, 1000 conns",
        ranges: 1,
        range_len: 64 << 10,
        aligned: false,
        connections: 1000,
        tls: false,
    },
];

/// Standard nginx settings tried for every load (each with `sendfile on`, one worker).
const NGINX_VARIANTS: &[(&str, &str)] = &[
    ("nopush off", "tcp_nopush off; open_file_cache max=1024;"),
    ("nopush on", "tcp_nopush on; open_file_cache max=1024;"),
    ("max_chunk 512k", "tcp_nopush off; sendfile_max_chunk 512k; open_file_cache max=1024;"),
    ("aio threads", "tcp_nopush off; aio threads; open_file_cache max=1024;"),
    ("no file cache", "tcp_nopush off;"),
];

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

fn wait_ready(url: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let ok = Command::new("curl").args(["-skf", "-o", "/dev/null", url]).status().is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer within 20 s")
}

/// A wrk script that requests a random one of `paths` as `load` says, with the given token.
fn wrk_script(paths: &[String], load: &Load, token: Option<&str>) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    let auth = token.map(|t| format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n")).unwrap_or_default();
    let len = load.range_len.max(1);
    let start = if load.aligned {
        format!("math.random(0, {}) * {len}", BLOB_LEN / len - 1)
    } else {
        format!("math.random(0, {})", BLOB_LEN - len)
    };
    format!(
        r#"local paths = {{{}}}
{auth}math.randomseed(os.time())
request = function()
  local path = paths[math.random(#paths)]
  local n = {ranges}
  if n > 0 then
    local parts = {{}}
    for i = 1, n do
      local s = {start}
      parts[i] = s .. "-" .. (s + {last})
    end
    wrk.headers["Range"] = "bytes=" .. table.concat(parts, ",")
  end
  return wrk.format("GET", path)
end
"#,
        list.join(","),
        ranges = load.ranges,
        last = len - 1,
    )
}

/// Clock ticks of user + system time of a process (all its threads), from `/proc/<pid>/stat`.
/// With `children`, the ticks of its waited-for children instead.
fn cpu_ticks(stat: &str, children: bool) -> Result<u64> {
    // Fields after the command name, which is in parentheses and may hold spaces: the first
    // one after it is field 3 (state), so field n is at index n - 3.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    Ok(f.get(a).context("short /proc stat")?.parse::<u64>()? + f.get(b).context("short /proc stat")?.parse::<u64>()?)
}

fn process_ticks(pid: u32) -> Result<u64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading stat of {pid}"))?;
    cpu_ticks(&stat, false)
}

fn ticks_per_s() -> Result<f64> {
    let out = run_capture(Command::new("getconf").arg("CLK_TCK"))?;
    Ok(out.trim().parse()?)
}

/// What one wrk run against one server measured.
#[derive(Clone, Copy, Debug)]
struct Sample {
    requests: f64,
    bytes: f64,
    secs: f64,
    server_cpu_s: f64,
    /// Core 0's time in user mode, in the kernel and in softirqs over the run, from
    /// `/proc/stat` (only the servers run there): where the server's CPU went.
    core0: Core0,
    wrk_cpu_s: f64,
    socket_errors: u64,
}

/// Seconds one core spent in user mode (user + nice), in the kernel (system + irq) and in
/// softirqs.
#[derive(Clone, Copy, Debug, Default)]
struct Core0 {
    user: f64,
    system: f64,
    softirq: f64,
}

impl Core0 {
    /// Core 0's counters now.
    fn read(hz: f64) -> Result<Core0> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Core0::parse(&stat, hz)
    }

    /// The `cpu0` line of `/proc/stat`: user nice system idle iowait irq softirq …, in ticks.
    fn parse(stat: &str, hz: f64) -> Result<Core0> {
        let line = stat.lines().find(|l| l.starts_with("cpu0 ")).context("no cpu0 line in /proc/stat")?;
        let f: Vec<f64> = line.split_whitespace().skip(1).map(|v| v.parse::<f64>()).collect::<Result<_, _>>()?;
        if f.len() < 7 {
            bail!("short cpu0 line in /proc/stat: {line:?}");
        }
        Ok(Core0 { user: (f[0] + f[1]) / hz, system: (f[2] + f[5]) / hz, softirq: f[6] / hz })
    }

    fn since(&self, before: &Core0) -> Core0 {
        Core0 {
            user: self.user - before.user,
            system: self.system - before.system,
            softirq: self.softirq - before.softirq,
        }
    }
}

impl Sample {
    fn rps(&self) -> f64 {
        self.requests / self.secs
    }
    fn gbps(&self) -> f64 {
        self.bytes / self.secs / 1e9
    }
    fn cpu_us_per_req(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.requests
    }
    fn cpu_us_per_mb(&self) -> f64 {
        self.server_cpu_s * 1e6 / (self.bytes / 1e6)
    }
    /// Core 0's user, kernel and softirq time per request, µs.
    fn core0_us_per_req(&self) -> (f64, f64, f64) {
        let per = |x: f64| x * 1e6 / self.requests;
        (per(self.core0.user), per(self.core0.system), per(self.core0.softirq))
    }
    fn server_core(&self) -> f64 {
        self.server_cpu_s / self.secs
    }
    fn wrk_core(&self) -> f64 {
        self.wrk_cpu_s / self.secs
    }
}

fn parse_size(s: &str) -> Result<f64> {
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(at);
    let mult = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown unit {other:?} in {s:?}"),
    };
    Ok(num.parse::<f64>()? * mult)
}

/// Runs wrk on core 1 against `url` for `seconds` and reads the CPU the server process `pid`
/// and wrk itself used meanwhile. wrk runs under a shell that reports its children's CPU
/// (`cutime`, `cstime`) once wrk has exited.
/// None: no request completed in the time (a machine this busy can starve a server for seconds).
fn measure(url: &str, script: &Path, load: &Load, pid: u32, seconds: u32, hz: f64) -> Result<Option<Sample>> {
    let before = process_ticks(pid)?;
    let core0_before = Core0::read(hz)?;
    let t = Instant::now();
    let out = run_capture(
        Command::new("sh")
            .arg("-c")
            .arg(r#""$@"; rc=$?; read -r s < /proc/$$/stat; echo "XTASK_STAT $s"; exit $rc"#)
            .arg("sh")
            .args(["taskset", "-c", "1", "wrk", "-t1", "--timeout", "10s"])
            .arg(format!("-c{}", load.connections))
            .arg(format!("-d{seconds}s"))
            .arg("-s")
            .arg(script)
            .arg(url),
    )?;
    let wall = t.elapsed().as_secs_f64();
    let after = process_ticks(pid)?;
    let core0 = Core0::read(hz)?.since(&core0_before);
    if let Some(line) = out.lines().find(|l| l.contains("Non-2xx")) {
        bail!("errors during the run: {}\n{out}", line.trim());
    }
    let stat = out.lines().find_map(|l| l.strip_prefix("XTASK_STAT ")).context("no wrk CPU figure")?;
    let wrk_cpu_s = cpu_ticks(stat, true)? as f64 / hz;
    // "  123456 requests in 5.00s, 7.54GB read"
    let line = out.lines().find(|l| l.contains(" requests in ")).with_context(|| format!("no totals in:\n{out}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let requests: f64 = words.first().context("no request count")?.parse()?;
    let secs: f64 = words.get(3).context("no duration")?.trim_end_matches(',').trim_end_matches('s').parse()?;
    let bytes = parse_size(words.get(4).context("no byte count")?)?;
    if requests == 0.0 {
        return Ok(None);
    }
    let socket_errors = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| rest.split(',').filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // wrk's own duration excludes its start-up; the server's CPU covers the whole wall time,
    // which differs from it by milliseconds.
    let secs = if secs > 0.0 { secs } else { wall };
    Ok(Some(Sample {
        requests,
        bytes,
        secs,
        server_cpu_s: (after - before) as f64 / hz,
        core0,
        wrk_cpu_s,
        socket_errors,
    }))
}

/// [`measure`], tried again (up to three times in all) while no request completes.
fn measure_retrying(url: &str, script: &Path, load: &Load, pid: u32, seconds: u32, hz: f64) -> Result<Sample> {
    for attempt in 1..=3 {
        if let Some(s) = measure(url, script, load, pid, seconds, hz)? {
            return Ok(s);
        }
        println!("  no request completed in {seconds} s (attempt {attempt} of 3)");
    }
    bail!("no request completed in three attempts")
}

/// What one settled tree holds, and how much of it is in the page cache.
#[derive(Debug)]
struct Settled {
    files: u64,
    bytes: u64,
    resident: u64,
    /// Files that needed more than one read to be all resident.
    reread: u64,
}

/// Puts every file under `root` in the same page-cache state, whichever way it was written:
/// flushed (`fsync`), dropped from the cache (`POSIX_FADV_DONTNEED`), then read once from start
/// to end, so its pages come from one sequential read with readahead. What a server spends in
/// the kernel per request depends on how the pages it sends were brought in (written, read,
/// or faulted in through a mapping), so both servers' files get this before either starts;
/// fwrepo's mappings would pin its packs' pages as they are. Returns what the tree holds and how
/// much of it is resident afterwards.
fn settle_page_cache(root: &Path) -> Result<Settled> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let mut out = Settled { files: 0, bytes: 0, resident: 0, reread: 0 };
    let mut buf = vec![0u8; 1 << 20];
    for path in crate::dedup::files_under(root)? {
        let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // Dirty pages cannot be dropped: write them out first.
        f.sync_all().with_context(|| format!("flushing {}", path.display()))?;
        // SAFETY: a plain call on an open descriptor this function owns.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            bail!("dropping {} from the page cache: {}", path.display(), std::io::Error::from_raw_os_error(rc));
        }
        // Right after the drop, a few pages of a file written just before can go missing
        // again after they were read (seen on ext4 with freshly written packs): read until
        // all of it is resident.
        let mut len;
        let mut resident;
        let mut passes = 0;
        loop {
            passes += 1;
            f.seek(std::io::SeekFrom::Start(0))?;
            len = 0u64;
            loop {
                let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
                if n == 0 {
                    break;
                }
                len += n as u64;
            }
            resident = resident_bytes(&f, len).with_context(|| format!("page-cache state of {}", path.display()))?;
            if resident == len || passes == 4 {
                break;
            }
        }
        out.files += 1;
        out.bytes += len;
        out.resident += resident;
        out.reread += u64::from(passes > 1);
    }
    Ok(out)
}

/// How many of the `len` bytes of `f` are in the page cache (`mincore` over a shared read-only
/// mapping, which brings nothing in).
fn resident_bytes(f: &std::fs::File, len: u64) -> Result<u64> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let len_usize = usize::try_from(len)?;
    // SAFETY: a fresh read-only shared mapping of a file this function holds open; it is only
    // passed to mincore and unmapped before returning, never read.
    let map =
        unsafe { libc::mmap(std::ptr::null_mut(), len_usize, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    if map == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; usize::try_from(pages)?];
    // SAFETY: `map` is a live mapping of `len_usize` bytes and `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(map, len_usize, vec.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(map, len_usize) };
    if rc != 0 {
        return Err(err.into());
    }
    let full = vec.iter().filter(|&&b| b & 1 == 1).count() as u64;
    // The last page may be partial.
    let last_resident = vec.last().is_some_and(|&b| b & 1 == 1);
    let tail = len % page;
    Ok(if last_resident && tail != 0 { full * page - (page - tail) } else { full * page })
}

/// Reads every path once through `base` (with the token, if any), so the measured loads see the
/// steady state: each chunk already verified on first use (fwrepo) and every file in the page
/// cache (both).
fn warm_up(base: &str, paths: &[String], token: Option<&str>) -> Result<()> {
    let mut cmd = Command::new("curl");
    cmd.args(["-skf", "--fail-early"]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    for p in paths {
        cmd.args(["-o", "/dev/null"]).arg(format!("{base}{p}"));
    }
    run_capture(&mut cmd).map(drop).with_context(|| format!("warming up {base}"))
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

/// The worker of the nginx master `master` (its child process).
fn nginx_worker(master: u32) -> Result<u32> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(master) {
                return Ok(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nginx master {master} has no worker")
}

struct Options {
    runs: usize,
    seconds: u32,
    /// The loads to run, in `LOADS` order: those whose name contains a `--load` NAME, or all.
    loads: Vec<&'static Load>,
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut o = Options { runs: 3, seconds: 5, loads: Vec::new() };
    let mut names: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match *a {
            "--runs" => o.runs = value()?.parse().context("--runs")?,
            "--seconds" => o.seconds = value()?.parse().context("--seconds")?,
            "--load" => names.push(value()?),
            other => bail!("unknown argument {other:?}; use --runs N, --seconds S, --load NAME"),
        }
    }
    if let Some(unknown) = names.iter().find(|n| !LOADS.iter().any(|load| load.name.contains(*n))) {
        let all: Vec<&str> = LOADS.iter().map(|l| l.name).collect();
        bail!("--load {unknown:?} matches no load; loads are: {}", all.join("; "));
    }
    o.loads = LOADS.iter().filter(|l| names.is_empty() || names.iter().any(|n| l.name.contains(n))).collect();
    if o.runs == 0 || o.seconds == 0 {
        bail!("--runs and --seconds must be at least 1");
    }
    Ok(o)
}

pub fn run_bench(args: &[&str]) -> Result<()> {
    let options = parse_options(args)?;
    for (cmd, pkg) in [("nginx", "nginx"), ("wrk", "wrk"), ("curl", "curl"), ("openssl", "openssl")] {
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
    let result = bench(&bin, &tmp, &options);
    if std::env::var_os("FWREPO_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The request paths and token the bench serves, for each server.
struct Fixture {
    blob_paths: Vec<String>,
    file_paths: Vec<String>,
    token: String,
    data: PathBuf,
    keys: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn prepare(bin: &Path, tmp: &Path) -> Result<Fixture> {
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

    // One self-signed certificate for both servers (P-256, PKCS#8 key, mode 600).
    let cert = tmp.join("cert.pem");
    let key = tmp.join("key.pem");
    run_capture(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(Fixture { blob_paths, file_paths, token, data, keys, cert, key })
}

/// Starts `fwrepo serve` on core 0 with one runtime thread; `tls` serves HTTPS.
fn start_fwrepo(bin: &Path, tmp: &Path, fx: &Fixture, tls: bool) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let name = if tls { "tls" } else { "plain" };
    let config = tmp.join(format!("fwrepo-{name}.toml"));
    // As deployed (deploy/fwrepo-server.toml), audit log included; only the per-address cap is
    // raised, since every bench connection comes from 127.0.0.1.
    std::fs::write(
        &config,
        format!(
            "max_connections = 4096\nmax_connections_per_ip = 2048\naudit_log = {:?}\n",
            tmp.join(format!("audit-{name}.jsonl")).display().to_string()
        ),
    )?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"])
        .arg(bin)
        .args(["serve", "--threads", "1", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&fx.data)
        .arg("--keys")
        .arg(&fx.keys);
    if tls {
        cmd.arg("--tls-cert").arg(&fx.cert).arg("--tls-key").arg(&fx.key);
    }
    let guard = Guard(cmd.stderr(Stdio::null()).spawn()?);
    let scheme = if tls { "https" } else { "http" };
    wait_ready(&format!("{scheme}://127.0.0.1:{port}/readyz"))?;
    Ok((guard, port))
}

/// Starts nginx (one worker on core 0) with `directives`, plain on one port and TLS on another;
/// its files are named after `variant`, so several can run at once.
/// Returns the guard, the worker's pid and the two ports.
fn start_nginx(tmp: &Path, fx: &Fixture, variant: usize, directives: &str) -> Result<(Guard, u32, u16, u16)> {
    let (plain, tls) = (free_port()?, free_port()?);
    let conf = tmp.join(format!("nginx-{variant}.conf"));
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\nworker_rlimit_nofile 8192;\ndaemon off;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log {log} combined buffer=64k flush=50ms;\n  sendfile on;\n  {directives}\n  keepalive_requests 1000000;\n  max_ranges 64;\n\
             client_body_temp_path {t}; proxy_temp_path {t}; fastcgi_temp_path {t}; uwsgi_temp_path {t}; scgi_temp_path {t};\n\
             server {{\n    listen 127.0.0.1:{plain};\n    listen 127.0.0.1:{tls} ssl;\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    root {root};\n  }}\n}}\n",
            pid = tmp.join(format!("nginx-{variant}.pid")).display(),
            err = tmp.join(format!("nginx-{variant}-error.log")).display(),
            log = tmp.join(format!("nginx-{variant}-access.log")).display(),
            t = tmp.display(),
            cert = fx.cert.display(),
            key = fx.key.display(),
            root = tmp.join("www").display(),
        ),
    )?;
    let guard =
        Guard(Command::new("taskset").args(["-c", "0", "nginx", "-c"]).arg(&conf).stderr(Stdio::null()).spawn()?);
    let worker = nginx_worker(guard.0.id())?;
    wait_ready(&format!("http://127.0.0.1:{plain}{}", fx.file_paths[0]))?;
    wait_ready(&format!("https://127.0.0.1:{tls}{}", fx.file_paths[0]))?;
    Ok((guard, worker, plain, tls))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Median and range of one figure over the runs, e.g. `45.3k (40.1k–47.0k)`.
fn spread(samples: &[Sample], f: impl Fn(&Sample) -> f64, fmt: impl Fn(f64) -> String) -> String {
    let v: Vec<f64> = samples.iter().map(&f).collect();
    let lo = v.iter().copied().fold(f64::MAX, f64::min);
    let hi = v.iter().copied().fold(f64::MIN, f64::max);
    if samples.len() == 1 { fmt(v[0]) } else { format!("{} ({}–{})", fmt(median(v)), fmt(lo), fmt(hi)) }
}

fn print_row(server: &str, samples: &[Sample]) {
    let k = |x: f64| if x >= 1000.0 { format!("{:.1}k", x / 1000.0) } else { format!("{x:.0}") };
    let f1 = |x: f64| format!("{x:.1}");
    let f2 = |x: f64| format!("{x:.2}");
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let errors: u64 = samples.iter().map(|s| s.socket_errors).sum();
    let split = |f: fn(&(f64, f64, f64)) -> f64| median(samples.iter().map(|s| f(&s.core0_us_per_req())).collect());
    let core0 = format!("{:.1} / {:.1} / {:.1}", split(|c| c.0), split(|c| c.1), split(|c| c.2));
    println!(
        "  {server:<34} {:>24} {:>20} {:>22} {:>20} {:>18} {:>16} {:>16}{}",
        spread(samples, Sample::rps, k),
        spread(samples, Sample::gbps, f2),
        spread(samples, Sample::cpu_us_per_req, f1),
        spread(samples, Sample::cpu_us_per_mb, f1),
        core0,
        spread(samples, Sample::server_core, pct),
        spread(samples, Sample::wrk_core, pct),
        if errors > 0 { format!("  socket errors {errors}") } else { String::new() },
    );
}

/// A server being measured: where to send a load and whose CPU to read.
struct Target<'a> {
    name: String,
    pid: u32,
    plain: u16,
    tls: u16,
    scripts: &'a [PathBuf],
}

impl Target<'_> {
    fn measure(&self, i: usize, load: &Load, options: &Options, hz: f64) -> Result<Sample> {
        let url = if load.tls {
            format!("https://127.0.0.1:{}/", self.tls)
        } else {
            format!("http://127.0.0.1:{}/", self.plain)
        };
        measure_retrying(&url, &self.scripts[i], load, self.pid, options.seconds, hz)
            .with_context(|| format!("{}, {}", self.name, load.name))
    }
}

fn report(round: &str, who: &str, load: &Load, s: &Sample) {
    println!(
        "{round:<9} {who:<24} {:<30} {:>9.0} req/s {:>7.1} µs CPU/req  wrk {:>3.0}%",
        load.name,
        s.rps(),
        s.cpu_us_per_req(),
        s.wrk_core() * 100.0
    );
}

/// Of nginx's measured configurations for one load (each a set of samples, one per round), the
/// one with the lowest median CPU per request and the one with the highest median throughput.
/// The choosing round's one sample per configuration picked which ones to measure; the
/// measuring rounds decide which of those is nginx's best.
fn best_measured(sets: &[&[Sample]]) -> (usize, usize) {
    let med = |i: usize, f: fn(&Sample) -> f64| median(sets[i].iter().map(f).collect());
    let by = |f: fn(&Sample) -> f64| move |&a: &usize, &b: &usize| med(a, f).total_cmp(&med(b, f));
    let cpu = (0..sets.len()).min_by(by(Sample::cpu_us_per_req)).expect("configurations");
    let thr = (0..sets.len()).max_by(by(Sample::rps)).expect("configurations");
    (cpu, thr)
}

/// nginx's configuration with the lowest CPU per request and the one with the highest
/// throughput for one load, from the choosing round's samples (`[variant]`).
fn choose(samples: &[Sample]) -> (usize, usize) {
    best_measured(&samples.iter().map(std::slice::from_ref).collect::<Vec<_>>())
}

/// The bench proper. A choosing round first: one sample of every load from nginx in each
/// configuration, which picks nginx's best per load (lowest CPU per request, and highest
/// throughput). Then `runs` measuring rounds, in which fwrepo and nginx in its chosen
/// configurations take turns on each load (the order flips every round), so the machine's
/// drift falls on both alike. The ratios come from the measuring rounds only: the choosing
/// round's best-of-five figure is biased low by the choice itself (the lowest of several
/// noisy samples of nearly the same thing), so it is printed but not compared.
fn bench(bin: &Path, tmp: &Path, options: &Options) -> Result<()> {
    let loads = &options.loads;
    let fx = prepare(bin, tmp)?;
    let hz = ticks_per_s()?;
    let scripts = tmp.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    let mut fw_scripts = Vec::new();
    let mut ng_scripts = Vec::new();
    for (i, load) in loads.iter().enumerate() {
        let fw = scripts.join(format!("fw-{i}.lua"));
        std::fs::write(&fw, wrk_script(&fx.blob_paths, load, Some(&fx.token)))?;
        let ng = scripts.join(format!("ng-{i}.lua"));
        std::fs::write(&ng, wrk_script(&fx.file_paths, load, None))?;
        fw_scripts.push(fw);
        ng_scripts.push(ng);
    }

    // Both servers' files from one sequential read each, before fwrepo maps its packs.
    for (who, root) in [("fwrepo (packs, database)", &fx.data), ("nginx (plain files)", &tmp.join("www"))] {
        let s = settle_page_cache(root)?;
        println!(
            "page cache: {who}: {} files, {:.1} MiB dropped and read once ({} read again to fill gaps); \
             {:.1}% resident",
            s.files,
            s.bytes as f64 / f64::from(1u32 << 20),
            s.reread,
            if s.bytes == 0 { 100.0 } else { 100.0 * s.resident as f64 / s.bytes as f64 }
        );
        if s.resident < s.bytes {
            bail!(
                "{who}: only {} of {} bytes are in the page cache after four reads (short of memory?)",
                s.resident,
                s.bytes
            );
        }
    }
    let (fw_plain, fw_port) = start_fwrepo(bin, tmp, &fx, false)?;
    let (fw_tls, fw_tls_port) = start_fwrepo(bin, tmp, &fx, true)?;
    warm_up(&format!("http://127.0.0.1:{fw_port}"), &fx.blob_paths, Some(&fx.token))?;
    warm_up(&format!("https://127.0.0.1:{fw_tls_port}"), &fx.blob_paths, Some(&fx.token))?;
    // Both fwrepo processes are on core 0 for the whole bench; a load reads the CPU of the one
    // it goes to.
    let fwrepo_for = |load: &Load| Target {
        name: "fwrepo".into(),
        pid: if load.tls { fw_tls.0.id() } else { fw_plain.0.id() },
        plain: fw_port,
        tls: fw_tls_port,
        scripts: &fw_scripts,
    };

    println!(
        "\nchoosing round: one {} s sample per load of nginx in each of {} configurations; fwrepo: token + audit \
         log, 1 thread on core 0; wrk on core 1",
        options.seconds,
        NGINX_VARIANTS.len()
    );
    // chosen_round[variant][load]: the choosing round's samples.
    let mut chosen_round: Vec<Vec<Sample>> = Vec::new();
    for (v, (variant, directives)) in NGINX_VARIANTS.iter().enumerate() {
        let (_nginx, worker, plain, tls) = start_nginx(tmp, &fx, v, directives)?;
        warm_up(&format!("http://127.0.0.1:{plain}"), &fx.file_paths, None)?;
        let target = Target { name: format!("nginx {variant}"), pid: worker, plain, tls, scripts: &ng_scripts };
        let mut row = Vec::new();
        for (i, load) in loads.iter().enumerate() {
            let s = target.measure(i, load, options, hz)?;
            report("choosing", &target.name, load, &s);
            row.push(s);
        }
        chosen_round.push(row);
    }
    // picks[load] = (best CPU, best throughput)
    let picks: Vec<(usize, usize)> =
        (0..loads.len()).map(|i| choose(&chosen_round.iter().map(|row| row[i]).collect::<Vec<_>>())).collect();

    // Every configuration some load chose, each its own nginx (one worker on core 0; the idle
    // ones cost nothing), so the measuring rounds can take turns without restarts.
    let mut running: Vec<(usize, Guard, Target)> = Vec::new();
    for (v, (variant, directives)) in NGINX_VARIANTS.iter().enumerate() {
        if !picks.iter().any(|&(c, t)| c == v || t == v) {
            continue;
        }
        let (guard, worker, plain, tls) = start_nginx(tmp, &fx, v, directives)?;
        warm_up(&format!("http://127.0.0.1:{plain}"), &fx.file_paths, None)?;
        let name = format!("nginx {variant}");
        running.push((v, guard, Target { name, pid: worker, plain, tls, scripts: &ng_scripts }));
    }
    let nginx_target = |v: usize| &running.iter().find(|r| r.0 == v).expect("chosen configuration runs").2;

    println!(
        "\n{} measuring round(s) of {} s per load and server: fwrepo and nginx in its chosen configurations \
         take turns",
        options.runs, options.seconds
    );
    // fwrepo[load], nginx_cpu[load], nginx_thr[load]: one sample per measuring round
    // (nginx_thr stays empty for a load whose two picks are one configuration).
    let mut fwrepo: Vec<Vec<Sample>> = vec![Vec::new(); loads.len()];
    let mut nginx_cpu: Vec<Vec<Sample>> = vec![Vec::new(); loads.len()];
    let mut nginx_thr: Vec<Vec<Sample>> = vec![Vec::new(); loads.len()];
    for run in 1..=options.runs {
        let round = format!("round {run}");
        for (i, load) in loads.iter().enumerate() {
            let (c, t) = picks[i];
            // 0: fwrepo, 1: nginx's best CPU, 2: nginx's best throughput (when another one).
            let mut order: Vec<u8> = if c == t { vec![0, 1] } else { vec![0, 1, 2] };
            if run % 2 == 0 {
                order.reverse();
            }
            for who in order {
                let target = match who {
                    0 => &fwrepo_for(load),
                    1 => nginx_target(c),
                    _ => nginx_target(t),
                };
                let s = target.measure(i, load, options, hz)?;
                report(&round, &target.name, load, &s);
                match who {
                    0 => fwrepo[i].push(s),
                    1 => nginx_cpu[i].push(s),
                    _ => nginx_thr[i].push(s),
                }
            }
        }
    }

    println!(
        "\nmeasuring rounds, median (min–max) over {} round(s); nginx in the configurations the choosing round \
         picked for CPU per request and for throughput (its other configurations: the choosing round's one sample)",
        options.runs,
    );
    println!(
        "  {:<34} {:>24} {:>20} {:>22} {:>20} {:>18} {:>16} {:>16}",
        "server",
        "req/s",
        "GB/s",
        "server µs CPU/req",
        "server µs CPU/MB",
        "core 0 usr/sys/si",
        "server core",
        "wrk core"
    );
    println!("  (core 0 usr/sys/si: µs per request core 0 spent in user mode, in the kernel and in softirqs)");
    let mut worst_cpu = (f64::MAX, "");
    let mut worst_thr = (f64::MAX, "");
    for (i, load) in loads.iter().enumerate() {
        println!("{} ({} connections)", load.name, load.connections);
        let (c, t) = picks[i];
        let med = |s: &[Sample], f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
        print_row("fwrepo", &fwrepo[i]);
        if c == t {
            print_row(&format!("nginx [{}] (best CPU and req/s)", NGINX_VARIANTS[c].0), &nginx_cpu[i]);
        } else {
            print_row(&format!("nginx [{}] (best CPU)", NGINX_VARIANTS[c].0), &nginx_cpu[i]);
            print_row(&format!("nginx [{}] (best req/s)", NGINX_VARIANTS[t].0), &nginx_thr[i]);
        }
        for (v, (variant, _)) in NGINX_VARIANTS.iter().enumerate() {
            print_row(&format!("  choosing: nginx [{variant}]"), std::slice::from_ref(&chosen_round[v][i]));
        }
        // The ratios take nginx's best of the configurations measured, by their medians: the
        // one picked for throughput may turn out the cheaper per request, or the other way.
        let measured: Vec<(usize, &[Sample])> =
            if c == t { vec![(c, &nginx_cpu[i])] } else { vec![(c, &nginx_cpu[i]), (t, &nginx_thr[i])] };
        let (bc, bt) = best_measured(&measured.iter().map(|m| m.1).collect::<Vec<_>>());
        let (cpu_best, thr_best) = (measured[bc], measured[bt]);
        let cpu_ratio = med(cpu_best.1, Sample::cpu_us_per_req) / med(&fwrepo[i], Sample::cpu_us_per_req);
        let thr_ratio = med(&fwrepo[i], Sample::rps) / med(thr_best.1, Sample::rps);
        let bound = |s: &[Sample]| med(s, Sample::wrk_core) >= WRK_BOUND;
        let note = match (bound(&fwrepo[i]), bound(thr_best.1)) {
            (true, true) => "  (wrk was the limit for both: throughput says little)",
            (true, false) => "  (wrk was the limit for fwrepo)",
            (false, true) => "  (wrk was the limit for nginx)",
            (false, false) => "",
        };
        println!(
            "  CPU/request nginx÷fwrepo = {cpu_ratio:.2} (nginx [{}]); throughput fwrepo÷nginx = {thr_ratio:.2} \
             (nginx [{}]){note}",
            NGINX_VARIANTS[cpu_best.0].0, NGINX_VARIANTS[thr_best.0].0
        );
        if cpu_ratio < worst_cpu.0 {
            worst_cpu = (cpu_ratio, load.name);
        }
        if thr_ratio < worst_thr.0 {
            worst_thr = (thr_ratio, load.name);
        }
    }
    let pid = fw_plain.0.id();
    println!(
        "fwrepo RSS: {} KiB anonymous (heap), {} KiB file-backed (mapped packs, not heap)",
        rss_kib(pid, "RssAnon:"),
        rss_kib(pid, "RssFile:")
    );
    drop(running);
    drop((fw_plain, fw_tls));
    println!(
        "worst CPU/request nginx÷fwrepo = {:.2} ({}); worst throughput fwrepo÷nginx = {:.2} ({})",
        worst_cpu.0, worst_cpu.1, worst_thr.0, worst_thr.1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(o: &Options) -> Vec<&'static str> {
        o.loads.iter().map(|l| l.name).collect()
    }

    /// A 5 s sample of 64 KiB responses.
    fn sample(requests: f64, server_cpu_s: f64) -> Sample {
        Sample {
            requests,
            bytes: requests * 65536.0,
            secs: 5.0,
            server_cpu_s,
            core0: Core0::default(),
            wrk_cpu_s: 4.0,
            socket_errors: 0,
        }
    }

    #[test]
    fn the_choice_takes_the_lowest_cpu_and_the_highest_throughput_separately() {
        // 0: cheapest per request but slow; 1: fastest; 2: neither.
        let samples = [sample(50_000.0, 1.0), sample(150_000.0, 4.5), sample(100_000.0, 4.0)];
        assert_eq!(choose(&samples), (0, 1));
        assert_eq!(choose(&samples[1..]), (0, 0), "one configuration can win both");
    }

    #[test]
    fn the_ratios_take_nginx_s_best_measured_configuration_by_median() {
        // Picked for CPU, but one round's outlier aside the other one is cheaper and faster.
        let picked_for_cpu = [sample(100_000.0, 1.0), sample(100_000.0, 1.6), sample(100_000.0, 1.7)];
        let picked_for_thr = [sample(110_000.0, 1.5), sample(120_000.0, 1.5), sample(90_000.0, 1.5)];
        assert_eq!(best_measured(&[&picked_for_cpu, &picked_for_thr]), (1, 1));
        assert_eq!(best_measured(&[&picked_for_thr, &picked_for_cpu]), (0, 0));
        assert_eq!(best_measured(&[&picked_for_cpu]), (0, 0));
    }

    #[test]
    fn settling_counts_every_file_and_leaves_all_of_it_resident() {
        let dir = std::env::temp_dir().join(format!("fwrepo-settle-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        // A partial last page, an empty file and a nested one.
        std::fs::write(dir.join("a"), vec![7u8; 3 * 4096 + 100]).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::write(dir.join("sub/b"), vec![1u8; 5000]).unwrap();
        let s = settle_page_cache(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let bytes = 3 * 4096 + 100 + 5000;
        assert_eq!((s.files, s.bytes, s.resident), (3, bytes, bytes));
    }

    #[test]
    fn settling_a_missing_tree_names_it() {
        let err = settle_page_cache(Path::new("/nonexistent/fwrepo-settle")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/fwrepo-settle"), "{err:#}");
    }

    #[test]
    fn core_0_is_read_from_its_own_line_of_proc_stat() {
        let stat =
            "cpu  900 10 500 9000 5 0 70 0 0 0\ncpu0 400 100 250 4500 2 3 40 0 0 0\ncpu1 500 0 250 4500 3 0 30 0 0 0\n";
        let c = Core0::parse(stat, 100.0).unwrap();
        assert_eq!((c.user, c.system, c.softirq), (5.0, 2.53, 0.4));
        let later = Core0::parse(&stat.replace("cpu0 400", "cpu0 600"), 100.0).unwrap();
        assert_eq!(later.since(&c).user, 2.0);
        assert!(Core0::parse("cpu  1 2 3\ncpu1 1 2 3 4 5 6 7\n", 100.0).is_err(), "no cpu0 line");
        assert!(Core0::parse("cpu0 1 2 3\n", 100.0).is_err(), "short line");
    }

    #[test]
    fn without_load_every_load_runs() {
        let o = parse_options(&[]).unwrap();
        assert_eq!(names(&o), LOADS.iter().map(|l| l.name).collect::<Vec<_>>());
    }

    #[test]
    fn load_keeps_the_matching_loads_in_their_order() {
        let o = parse_options(&["--load", "whole", "--load", "64 KiB ranges"]).unwrap();
        assert_eq!(names(&o), ["64 KiB ranges, aligned", "64 KiB ranges, unaligned", "whole 8 MiB blobs"]);
    }

    #[test]
    fn a_load_that_matches_nothing_is_an_error_naming_the_loads() {
        let Err(e) = parse_options(&["--load", "whole", "--load", "nope"]) else {
            panic!("an unknown load was accepted")
        };
        let e = e.to_string();
        assert!(e.contains("\"nope\" matches no load"), "{e}");
        assert!(e.contains("whole 8 MiB blobs"), "{e}");
        assert!(parse_options(&["--load"]).is_err());
    }
}
