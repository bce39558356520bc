//! `fwrepo serve`: the HTTP server over a data dir, as a reader beside the CLI's writer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Seconds between catching up with what the writer published (releases, revocations).
    #[arg(long, default_value_t = 5)]
    refresh_secs: u64,
    /// Serve a mirror data dir (`fwrepo mirror init`): tokens verified offline against the
    /// synced auth documents, no token issuance, and a background sync.
    #[arg(long, conflicts_with = "keys")]
    mirror: bool,
    /// With --mirror: time between syncs (`300s`, `5m`, `1h`); backoff with jitter after failures.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = crate::mirror_cmd::parse_duration)]
    sync_interval: Duration,
}

/// Signed metadata straight from the data dir's index.
struct RepoMetadata(Arc<Store>);

impl MetadataSource for RepoMetadata {
    fn get(&self, name: &str) -> Option<Bytes> {
        match fwrepo_repo::read_metadata(self.0.db(), name) {
            Ok(found) => found.map(Bytes::from),
            Err(e) => {
                tracing::error!(name, error = %e, "reading metadata");
                None
            }
        }
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

fn verifier(keys: &Keys, store: &Arc<Store>, records: &Entitlements, a: &ServeArgs) -> Result<Verifier> {
    // A mirror has no records of its own: revocations come from the synced signed document.
    let revocations: Revocations = if a.mirror {
        match published_target(store, crate::entitle_cmd::REVOCATIONS_TARGET)? {
            Some(bytes) => Revocations::from_json(&bytes)?,
            None => Revocations::new(),
        }
    } else {
        records.revocations()?
    };
    Ok(Verifier::new(verifying_keys(keys, store)?, revocations, a.audience.clone()).with_issuer(a.issuer.clone()))
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
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
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
    let keys = match &ring {
        Some(r) => Keys::Own(r.verifying_keys()),
        None => Keys::Published,
    };
    let initial = verifier(&keys, &store, &records, &a)?;
    let metadata: Arc<dyn MetadataSource> = Arc::new(RepoMetadata(store.clone()));
    let mut state = ServerState::new(&config, store.clone(), metadata, initial)?;
    if let Some(ring) = ring {
        let issuer = Issuer::new(IssuerConfig::new(a.issuer.clone(), a.audience.clone()), ring)?;
        state = state.with_issuer(issuer, Entitlements::new(store.db().clone()));
    }
    if let Some(m) = &mirror {
        state = state.with_mirror(m.token_url.trim_end_matches('/'));
        crate::mirror_cmd::report_status(&state, &store);
    }
    let state = Arc::new(state);

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = a.threads {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().context("starting the async runtime")?;
    let (data_dir, sync_interval) = (a.data.data.clone(), a.sync_interval);
    rt.block_on(async {
        let bound = fwrepo_server::bind(config).await?;
        let scheme = if bound.is_tls() { "https" } else { "http" };
        println!("fwrepo serving {} on {scheme}://{}", a.data.data.display(), bound.local_addr());
        use std::io::Write;
        std::io::stdout().flush()?;
        let refresher = {
            let (state, store) = (state.clone(), store.clone());
            let every = Duration::from_secs(a.refresh_secs.max(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    // Pick up releases, records and revocations the writer committed since.
                    let result = state.refresh().map_err(anyhow::Error::from).and_then(|()| {
                        let records = Entitlements::new(store.db().clone());
                        verifier(&keys, &store, &records, &a)
                    });
                    match result {
                        Ok(v) => state.set_verifier(v),
                        Err(e) => tracing::error!(error = %e, "refresh failed; serving what was loaded before"),
                    }
                    if a.mirror {
                        crate::mirror_cmd::report_status(&state, &store);
                    }
                }
            })
        };
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
