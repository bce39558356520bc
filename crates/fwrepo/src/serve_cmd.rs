//! `fwrepo serve`: the HTTP server over a data dir, as a reader beside the CLI's writer.
//!
//! At start-up the soft `RLIMIT_NOFILE` is raised to the hard limit and the connection cap is
//! kept below the descriptors left after opening the store, so a connection flood cannot
//! starve the refresh that brings in revocations (which would otherwise fail, and fail
//! closed: see `fwrepo_server::ServerState`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use fwrepo_entitle::{Entitlements, Issuer, IssuerConfig, Revocations, Verifier, VerifyingKeys};
use fwrepo_server::{MetadataSource, ServerConfig, ServerState};
use fwrepo_store::{OpenOptions, Store};

use crate::entitle_cmd::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, ISSUERS_TARGET, load_keyring};
use crate::{Data, Outcome};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    data: Data,
    /// Address to listen on; overrides the config file. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Server settings (TOML, see deploy/fwrepo-server.toml); defaults when absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS with (ALPN h2, http/1.1); overrides the config
    /// file. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or EC; mode 600); overrides the config file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory holding issuer.jwks: enables POST /v1/tokens (the origin role). Without it
    /// tokens are verified with the published auth/issuers.json.
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The `iss` of issued tokens, and the issuer verified tokens must name.
    #[arg(long, default_value = DEFAULT_ISSUER)]
    issuer: String,
    /// The `aud` tokens are issued for and must carry.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// Seconds between catching up with what the writer published (releases, revocations);
    /// overrides `refresh_interval_s` of the config file (default 5).
    #[arg(long, value_name = "SECS")]
    refresh_secs: Option<u64>,
    /// Serve a mirror data dir (`fwrepo mirror init`): tokens verified offline against the
    /// synced auth documents, no token issuance, and a background sync.
    #[arg(long, conflicts_with = "keys")]
    mirror: bool,
    /// With --mirror: time between syncs (`300s`, `5m`, `1h`); backoff with jitter after failures.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = crate::mirror_cmd::parse_duration)]
    sync_interval: Duration,
}

/// Signed metadata straight from the data dir's index (of the store the server reads now).
struct RepoMetadata(RwLock<Arc<Store>>);

impl MetadataSource for RepoMetadata {
    fn get(&self, name: &str) -> Option<Bytes> {
        let store = Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()));
        match fwrepo_repo::read_metadata(store.db(), name) {
            Ok(found) => found.map(Bytes::from),
            Err(e) => {
                tracing::error!(name, error = %e, "reading metadata");
                None
            }
        }
    }

    fn store_reopened(&self, store: &Arc<Store>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(store);
    }
}

/// Where token signatures are checked against.
enum Keys {
    /// The public half of the origin's own keyring (it also issues).
    Own(VerifyingKeys),
    /// The published JWK Set.
    Published,
}

fn verifying_keys(keys: &Keys, store: &Arc<Store>) -> Result<VerifyingKeys> {
    match keys {
        Keys::Own(k) => Ok(k.clone()),
        Keys::Published => {
            let repo_targets = published_target(store, ISSUERS_TARGET)?.with_context(|| {
                format!("no issuer keys: pass --keys DIR, or publish {ISSUERS_TARGET} (`fwrepo auth publish`)")
            })?;
            Ok(VerifyingKeys::from_jwks(&repo_targets)?)
        }
    }
}

/// The bytes of a published target, found through the current signed metadata.
fn published_target(store: &Arc<Store>, path: &str) -> Result<Option<Vec<u8>>> {
    let repo = fwrepo_repo::Repo::over(store.clone());
    if !repo.has_metadata()? {
        return Ok(None);
    }
    let targets = repo.targets()?;
    let Some((_, t)) = targets.iter().find(|(p, _)| p.as_str() == path) else { return Ok(None) };
    let blob: fwrepo_store::Digest = t
        .custom
        .as_ref()
        .and_then(|c| c["blake3"].as_str())
        .with_context(|| format!("{path} has no blake3 id"))?
        .parse()?;
    Ok(Some(store.read_all(&blob)?.concat()))
}

/// What every verifier of this server checks besides keys and revocations.
struct VerifierSettings {
    keys: Keys,
    audience: String,
    issuer: String,
    max_lifetime_s: i64,
    /// A mirror has no records of its own: revocations come from the synced signed document.
    mirror: bool,
}

fn verifier(v: &VerifierSettings, store: &Arc<Store>, records: &Entitlements) -> Result<Verifier> {
    let revocations: Revocations = if v.mirror {
        match published_target(store, crate::entitle_cmd::REVOCATIONS_TARGET)? {
            Some(bytes) => Revocations::from_json(&bytes)?,
            None => Revocations::new(),
        }
    } else {
        records.revocations()?
    };
    Ok(Verifier::new(verifying_keys(&v.keys, store)?, revocations, v.audience.clone())
        .with_issuer(v.issuer.clone())
        .with_max_lifetime(v.max_lifetime_s))
}

/// The blobs of the current `auth/*` targets: the only blobs outside the releases a mirror
/// token may fetch. Empty when the data dir has no signed metadata.
fn auth_blobs(store: &Arc<Store>) -> Result<HashSet<fwrepo_store::Digest>> {
    let repo = fwrepo_repo::Repo::over(store.clone());
    if !repo.has_metadata()? {
        return Ok(HashSet::new());
    }
    let mut blobs = HashSet::new();
    for (path, t) in repo.targets()? {
        if !path.as_str().starts_with("auth/") {
            continue;
        }
        let id =
            t.custom.as_ref().and_then(|c| c["blake3"].as_str()).with_context(|| format!("{path} has no blake3 id"))?;
        blobs.insert(id.parse()?);
    }
    Ok(blobs)
}

/// One reload of what the signed metadata and records say: the auth-document blobs (emptied
/// on failure, so a mirror token is refused rather than served from stale facts), on a mirror
/// its sync status, and the verifier.
fn reload_round(v: &VerifierSettings, state: &ServerState) -> Result<Verifier> {
    let store = state.store();
    if v.mirror {
        crate::mirror_cmd::report_status(state, &store);
    }
    match auth_blobs(&store) {
        Ok(b) => state.set_auth_blobs(b),
        Err(e) => {
            state.set_auth_blobs(HashSet::new());
            return Err(e.context("reading the auth targets"));
        }
    }
    verifier(v, &store, &state.entitlements())
}

pub fn serve(a: ServeArgs) -> Result<Outcome> {
    let mut config = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            ServerConfig::from_toml(&path.display().to_string(), &text)?
        }
        None => ServerConfig::default(),
    };
    if let Some(listen) = a.listen {
        config.listen = listen;
    }
    if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    }
    if let Some(secs) = a.refresh_secs {
        config.refresh_interval_s = secs;
    }
    config.validate("command line")?;
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let fds = raise_fd_limit();
    let mut families = server_families();
    let mirror = match a.mirror {
        true => {
            families.extend(fwrepo_mirror::COLUMN_FAMILIES);
            Some(fwrepo_mirror::MirrorConfig::load(&a.data.data)?)
        }
        false => None,
    };
    let opts = OpenOptions { read_only: true, extra_column_families: families };
    let store = Arc::new(Store::open_with(&a.data.data, &opts)?);
    let records = Entitlements::new(store.db().clone());
    let ring = a.keys.as_deref().map(load_keyring).transpose()?;
    let settings = VerifierSettings {
        keys: match &ring {
            Some(r) => Keys::Own(r.verifying_keys()),
            None => Keys::Published,
        },
        audience: a.audience.clone(),
        issuer: a.issuer.clone(),
        max_lifetime_s: config.token_max_lifetime_s,
        mirror: a.mirror,
    };
    let initial = verifier(&settings, &store, &records)?;
    let metadata: Arc<dyn MetadataSource> = Arc::new(RepoMetadata(RwLock::new(store.clone())));
    let mut state = ServerState::new(&config, store.clone(), metadata, initial)?;
    if let Some(ring) = ring {
        let issuer = Issuer::new(IssuerConfig::new(a.issuer.clone(), a.audience.clone()), ring)?;
        state = state.with_issuer(issuer, Entitlements::new(store.db().clone()));
    }
    if let Some(m) = &mirror {
        state = state.with_mirror(m.token_url.trim_end_matches('/'));
        crate::mirror_cmd::report_status(&state, &store);
    }
    state.set_auth_blobs(auth_blobs(&store)?);
    let state = Arc::new(state);
    drop(store);
    let cap = connection_cap(config.max_connections, fds.soft, open_descriptors())?;
    let limits = format!(
        "file descriptors: soft limit {} (was {}, hard {}); connection cap {cap} (configured {})",
        fds.soft, fds.was, fds.hard, config.max_connections
    );
    config.max_connections = cap;

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = a.threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().context("starting the async runtime")?;
    let (data_dir, sync_interval) = (a.data.data.clone(), a.sync_interval);
    rt.block_on(async {
        let every = config.refresh_interval();
        let bound = fwrepo_server::bind(config).await?;
        let scheme = if bound.is_tls() { "https" } else { "http" };
        // For whoever started the server; if their stdout is gone, keep serving (main.rs).
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let line = format!("fwrepo serving {} on {scheme}://{}", a.data.data.display(), bound.local_addr());
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::debug!(error = %e, "cannot write the address line to stdout");
        }
        drop(out);
        eprintln!("fwrepo: {limits}");
        // Pick up releases, records, revocations (on a mirror: the synced signed documents)
        // and the auth targets the writer committed since; on a mirror, report the sync.
        let reload = move |s: &ServerState| reload_round(&settings, s);
        let refresher = tokio::spawn(state.clone().refresh_every(every, reload));
        let syncer = mirror.is_some().then(|| tokio::spawn(crate::mirror_cmd::sync_loop(data_dir, sync_interval)));
        bound.run(state, shutdown_signal()).await?;
        refresher.abort();
        if let Some(s) = syncer {
            s.abort();
        }
        anyhow::Ok(())
    })?;
    Ok(Outcome::Ok)
}

/// The descriptor limits at start-up.
struct FdLimits {
    /// The soft limit before it was raised.
    was: u64,
    /// The soft limit now.
    soft: u64,
    hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a default shell's soft limit of 1024 is
/// far below what a server with thousands of connections needs). Failure to raise keeps the
/// old limit; the connection cap then follows it.
fn raise_fd_limit() -> FdLimits {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading RLIMIT_NOFILE");
        return FdLimits { was: 1024, soft: 1024, hard: 1024 };
    }
    let was = lim.rlim_cur;
    // An unlimited hard limit cannot be the soft one: the kernel caps it at fs.nr_open.
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20)
    } else {
        lim.rlim_max
    };
    if target > lim.rlim_cur {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), target, "raising RLIMIT_NOFILE");
        }
    }
    FdLimits { was, soft: lim.rlim_cur, hard: lim.rlim_max }
}

/// Descriptors this process has open now.
fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(64)
}

/// The connection cap for a soft descriptor limit of `soft` with `open` descriptors in use:
/// the configured cap, but never more than what is left after a reserve of a quarter (at least
/// 64) for everything else the server opens while running — RocksDB table files as the reader
/// catches up (twice over while it opens the store again), pack files, the audit log.
fn connection_cap(configured: usize, soft: u64, open: u64) -> Result<usize> {
    let left = soft.saturating_sub(open);
    let room = left.saturating_sub((left / 4).max(64));
    if room == 0 {
        bail!(
            "only {left} file descriptors left under the soft limit of {soft}; raise the limit (`ulimit -n`, LimitNOFILE=)"
        );
    }
    Ok(configured.min(usize::try_from(room).unwrap_or(usize::MAX)))
}

fn server_families() -> Vec<&'static str> {
    let mut cfs = fwrepo_server::column_families();
    cfs.extend(fwrepo_repo::COLUMN_FAMILIES);
    cfs
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_stays_below_the_descriptors_left() {
        // The attack: 4096 connections against a soft limit of 1024.
        let cap = connection_cap(4096, 1024, 100).unwrap();
        assert!(cap < 1024 - 100, "{cap}");
        assert_eq!(cap, 924 - 231);
        // A roomy limit keeps the configured cap.
        assert_eq!(connection_cap(4096, 1 << 20, 100).unwrap(), 4096);
        // At least 64 descriptors stay in reserve, and no room at all is an error.
        assert_eq!(connection_cap(4096, 200, 100).unwrap(), 36);
        assert!(connection_cap(4096, 150, 100).is_err());
        assert!(connection_cap(4096, 50, 100).is_err());
    }

    #[test]
    fn soft_descriptor_limit_is_raised_to_the_hard_one() {
        let limits = raise_fd_limit();
        assert!(limits.soft >= limits.was);
        let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, limits.soft);
        if now.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(now.rlim_cur, now.rlim_max);
        }
    }

    #[test]
    fn init_creates_every_column_family_before_any_entitlement_write() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Store::init(&data, &fwrepo_store::InitOptions::default()).unwrap();
        let db =
            fwrepo_db::Db::open(&data.join("index"), fwrepo_db::DATA_DIR_FAMILIES, fwrepo_db::Mode::ReadOnly).unwrap();
        assert!(db.absent_families().is_empty(), "{:?}", db.absent_families());
    }

    #[test]
    fn every_column_family_of_every_crate_is_created_by_the_writer() {
        let mut all: Vec<&str> = fwrepo_store::COLUMN_FAMILIES.to_vec();
        all.extend(fwrepo_repo::column_families());
        all.extend(fwrepo_entitle::COLUMN_FAMILIES);
        all.extend(fwrepo_server::column_families());
        for cf in all {
            assert!(fwrepo_db::DATA_DIR_FAMILIES.contains(&cf), "{cf} is not in fwrepo_db::DATA_DIR_FAMILIES");
        }
    }
}
