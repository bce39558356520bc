//! `fwrepo mirror init | sync | status | gc`: a partner mirror's data dir, its sync and its
//! garbage collection.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fwrepo_mirror::{GcOptions, Mirror, MirrorConfig, SyncOptions};

use crate::{Data, Outcome};

#[derive(clap::Subcommand)]
pub enum MirrorCommand {
    /// Create a mirror data dir that pins the vendor's version-1 root and records the upstream.
    Init(InitArgs),
    /// Sync once from the upstream, then exit: 0 when the mirror is current.
    Sync(SyncArgs),
    /// Show the upstream, the last attempt and success, the served metadata and what is missing.
    Status(StatusArgs),
    /// Remove blobs the served metadata no longer names, once their grace period is over.
    Gc(GcArgs),
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    data: Data,
    /// Base URL of the upstream: the origin, or another mirror.
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// The vendor's version-1 root metadata, obtained out of band.
    #[arg(long, value_name = "FILE")]
    root: PathBuf,
    /// File holding the partner's API credential (mode 0600).
    #[arg(long, value_name = "FILE")]
    credential_file: PathBuf,
    /// Where the credential is exchanged for a token (the origin); default the upstream.
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// Models to mirror; default every model the partner may mirror.
    #[arg(long, value_name = "MODEL", num_args = 1..)]
    models: Vec<String>,
    /// How long `mirror gc` keeps a blob the served metadata no longer names (`30m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_grace)]
    gc_grace: Duration,
}

#[derive(clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    data: Data,
    /// Print what the sync did as one JSON object.
    #[arg(long)]
    json: bool,
    /// Longest wait for an answer or for the next body bytes, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

#[derive(clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    data: Data,
    /// How long a blob stays after a collection first saw it unreferenced (`0s`, `30m`, `1h`);
    /// default `gc_grace_s` of DATA/mirror.toml.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    grace: Option<Duration>,
    /// Show what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    data: Data,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn mirror(cmd: MirrorCommand) -> Result<Outcome> {
    match cmd {
        MirrorCommand::Init(a) => init(a),
        MirrorCommand::Sync(a) => sync(a),
        MirrorCommand::Status(a) => status(a),
        MirrorCommand::Gc(a) => gc(a),
    }
}

fn init(a: InitArgs) -> Result<Outcome> {
    let config = MirrorConfig {
        token_url: a.token_url.unwrap_or_else(|| a.upstream.clone()),
        upstream: a.upstream,
        credential_file: std::path::absolute(&a.credential_file)
            .with_context(|| a.credential_file.display().to_string())?,
        models: a.models,
        gc_grace_s: a.gc_grace.as_secs(),
    };
    Mirror::init(&a.data.data, &config, &a.root, &fwrepo_server::column_families())?;
    println!("mirror {} of {} (tokens from {})", a.data.data.display(), config.upstream, config.token_url);
    Ok(Outcome::Ok)
}

fn sync(a: SyncArgs) -> Result<Outcome> {
    if a.timeout_secs == 0 {
        bail!("--timeout-secs must be at least 1");
    }
    let mirror = Mirror::open(&a.data.data, &fwrepo_server::column_families())?;
    let mut opts = SyncOptions::default();
    let t = Duration::from_secs(a.timeout_secs);
    opts.fetch.request_timeout = t;
    opts.fetch.idle_timeout = t;
    opts.http.read_timeout = t;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let r = rt.block_on(mirror.sync(&opts)).context("sync failed; still serving the previous state")?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else if r.unchanged {
        println!("unchanged: timestamp version {} ({} bytes over the wire)", r.timestamp_version, r.wire_bytes);
    } else {
        println!(
            "timestamp {} -> {}, snapshot {}, targets {}; {} targets in scope, {} new, releases new: {}",
            r.timestamp_version_before,
            r.timestamp_version,
            r.snapshot_version,
            r.targets_version,
            r.targets_in_scope,
            r.targets_new,
            if r.releases_new.is_empty() { "none".to_owned() } else { r.releases_new.join(", ") }
        );
        println!(
            "{} chunks fetched ({} bytes), {} bytes already present, {} bytes over the wire in {} requests, {:.2} s",
            r.chunks_fetched, r.chunk_bytes_fetched, r.bytes_present, r.wire_bytes, r.requests, r.seconds
        );
    }
    Ok(Outcome::Ok)
}

fn gc(a: GcArgs) -> Result<Outcome> {
    let mirror = Mirror::open(&a.data.data, &fwrepo_server::column_families())?;
    let grace = a.grace.unwrap_or(Duration::from_secs(mirror.config().gc_grace_s));
    let r = mirror.gc(&GcOptions { grace, dry_run: a.dry_run })?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(Outcome::Ok);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!(
        "{} live blobs, {} kept for their grace period ({} s){}; {verb} {} blobs ({} bytes)",
        r.blobs_live,
        r.blobs_in_grace,
        grace.as_secs(),
        r.next_expiry.map_or_else(String::new, |t| format!(", the next expires {}", time(Some(t)))),
        r.blobs_expired,
        r.bytes_expired,
    );
    if let Some(s) = &r.store {
        println!(
            "store: removed {} chunks; rewrote {} packs, removed {} packs; reclaimed {} bytes",
            s.chunks_removed, s.packs_rewritten, s.packs_removed, s.bytes_reclaimed
        );
    }
    Ok(Outcome::Ok)
}

fn time(t: Option<i64>) -> String {
    t.and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0))
        .map_or_else(|| "never".to_owned(), |d| d.to_rfc3339())
}

fn status(a: StatusArgs) -> Result<Outcome> {
    // A reader: a status never holds the lock a background sync needs.
    let mirror = Mirror::open_read_only(&a.data.data, &fwrepo_server::column_families())?;
    let s = mirror.status()?;
    let missing = mirror.missing()?;
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["upstream"] = mirror.config().upstream.clone().into();
        v["token_url"] = mirror.config().token_url.clone().into();
        v["missing"] = serde_json::to_value(&missing)?;
        v["last_gc"] = serde_json::to_value(mirror.last_gc()?)?;
        println!("{v}");
        return Ok(Outcome::Ok);
    }
    let c = mirror.config();
    println!("upstream:      {} (tokens from {})", c.upstream, c.token_url);
    println!(
        "models:        {}",
        if c.models.is_empty() { "all the partner may mirror".into() } else { c.models.join(", ") }
    );
    println!("last attempt:  {}", time(s.last_attempt));
    println!("last success:  {}", time(s.last_success));
    println!("last gc:       {}", time(mirror.last_gc()?));
    if let Some(e) = &s.last_error {
        println!("last error:    {e} ({} failures in a row)", s.consecutive_failures);
    }
    println!(
        "metadata:      root {}, timestamp {} (expires {}), snapshot {}, targets {}",
        s.root_version,
        s.timestamp_version,
        time(s.timestamp_expires),
        s.snapshot_version,
        s.targets_version
    );
    println!("in scope:      {} targets", s.targets_in_scope);
    println!("missing:       {}", if missing.is_empty() { "none".to_owned() } else { missing.join(", ") });
    if !s.pending.is_empty() {
        println!("pending:       {} targets of newer upstream metadata: {}", s.pending.len(), s.pending.join(", "));
    }
    Ok(Outcome::Ok)
}

/// Parses `300s`, `5m`, `1h` or plain seconds; at least one second.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_grace(s)?;
    if d.is_zero() {
        return Err("the interval must be at least one second".into());
    }
    Ok(d)
}

/// Parses `300s`, `5m`, `1h` or plain seconds; zero allowed.
fn parse_grace(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: want a number of seconds, or 300s, 5m, 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Hands the recorded sync status to a mirror server (`/metrics`, `/readyz`).
pub fn report_status(state: &fwrepo_server::ServerState, store: &fwrepo_store::Store) {
    match fwrepo_mirror::read_status(store.db()) {
        Ok(Some(s)) => state.set_mirror_status(fwrepo_server::MirrorStatus {
            last_success: s.last_success,
            consecutive_failures: s.consecutive_failures,
            timestamp_expires: s.timestamp_expires,
            wire_bytes_total: s.wire_bytes_total,
            chunk_bytes_total: s.chunk_bytes_total,
            chunks_total: s.chunks_total,
        }),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "reading the mirror status"),
    }
}

/// One `fwrepo mirror gc` child; its failure is only logged.
async fn collect(exe: &std::path::Path, data: &std::path::Path) {
    let out = tokio::process::Command::new(exe)
        .arg("mirror")
        .arg("gc")
        .arg("--data")
        .arg(data)
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {
            tracing::info!(report = %String::from_utf8_lossy(&o.stdout).trim(), "mirror gc");
        }
        Ok(o) => tracing::warn!(error = %String::from_utf8_lossy(&o.stderr).trim(), "mirror gc failed"),
        Err(e) => tracing::warn!(error = %e, "mirror gc did not start"),
    }
}

/// A pseudo-random fraction in [0, 1) for jitter; no need for more than the clock's nanos.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// The background sync of `fwrepo serve --mirror`: `fwrepo mirror sync` as a child process
/// (the server is a reader beside it; a crashed sync takes nothing down), every `interval`,
/// after failures sooner with exponential backoff from 5 s, jittered, capped at `interval`.
/// After each successful sync, `fwrepo mirror gc` (grace from `mirror.toml`) as a child the
/// same way; a failed collection is logged and changes nothing for the next sync.
pub async fn sync_loop(data: PathBuf, interval: Duration) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "no background sync: cannot find the fwrepo binary");
            return;
        }
    };
    let mut failures: u32 = 0;
    loop {
        let out = tokio::process::Command::new(&exe)
            .arg("mirror")
            .arg("sync")
            .arg("--data")
            .arg(&data)
            .kill_on_drop(true)
            .output()
            .await;
        let wait = match out {
            Ok(o) if o.status.success() => {
                failures = 0;
                collect(&exe, &data).await;
                interval
            }
            result => {
                failures = failures.saturating_add(1);
                let why = match result {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(failures, error = %why, "mirror sync failed; serving the previous state");
                let backoff = Duration::from_secs(5).saturating_mul(1 << failures.min(16));
                backoff.min(interval)
            }
        };
        // ±20 %, so mirrors that started together do not sync together.
        tokio::time::sleep(wait.mul_f64(0.8 + 0.4 * jitter())).await;
    }
}
