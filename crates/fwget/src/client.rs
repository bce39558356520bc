//! The client: peers from the config, the token (renewed near expiry), refresh from the
//! origin, the offline view of stored metadata, and the commands' work.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use chrono::Utc;
use fwrepo_chunk::ChunkerParams;
use fwrepo_fetch::{
    Body, BodySource, FetchOptions, Fetcher, HttpOptions, HttpTransport, Request, Response, Routes, Transport,
    WireCounter, WireStats,
};
use fwrepo_tuf::{FwCustom, Limits, TargetInfo, TargetPath};
use fwrepo_version::Version;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::catalog::{Catalog, Plan};
use crate::delta::{self, Outcome, Peer, Progress};
use crate::dir::{ClientDir, Credential, DirStore, TokenFile};
use crate::error::{Error, Result};
use crate::seeds::Seeds;

/// A token is renewed when it expires within this many seconds.
pub const RENEW_BEFORE_SECS: i64 = 300;
/// Largest token service answer read.
const MAX_TOKEN_REPLY: u64 = 64 * 1024;

/// The origin (token service, metadata) and the peers blobs come from: mirrors, then origin.
pub struct Client<T> {
    pub dir: ClientDir,
    pub origin: Peer<T>,
    pub mirrors: Vec<Peer<T>>,
    /// The origin is a static host of an export: it issues no tokens.
    pub static_host: bool,
}

/// Builds HTTP peers from the config. The origin of a static repo (`static = true`) is
/// reached with [`Routes::export`]; mirrors are `fwrepo serve --mirror` servers.
pub fn http_client(dir: ClientDir, opts: FetchOptions) -> Result<Client<HttpTransport>> {
    let config = dir.config()?;
    let mut http =
        HttpOptions { user_agent: concat!("fwget/", env!("CARGO_PKG_VERSION")).into(), ..HttpOptions::default() };
    if let Some(ca) = &config.cacert {
        http.ca_pem = Some(std::fs::read(ca).map_err(|source| Error::Io { path: ca.clone(), source })?);
    }
    let peer = |url: &str, routes: Routes| -> Result<Peer<HttpTransport>> {
        let opts = FetchOptions { routes, ..opts.clone() };
        Ok(Peer { name: url.to_owned(), fetcher: Fetcher::new(HttpTransport::new(url, &http)?, opts) })
    };
    let origin_routes = if config.static_host { Routes::export() } else { opts.routes.clone() };
    let origin = peer(&config.repo, origin_routes)?;
    let mirrors = config.mirrors.iter().map(|m| peer(m, opts.routes.clone())).collect::<Result<_>>()?;
    Ok(Client { dir, origin, mirrors, static_host: config.static_host })
}

#[derive(Deserialize)]
struct TokenReply {
    token: String,
    expires_at: i64,
}

#[derive(Deserialize)]
struct ErrorReply {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// An offline transport: serves `/metadata/NAME` from the files kept in the client dir, so
/// the same TUF workflow re-verifies stored metadata with no network.
pub struct OfflineTransport {
    store: DirStore,
    prefix: String,
    wire: WireCounter,
}

struct Once(Option<Bytes>);

impl BodySource for Once {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = fwrepo_fetch::Result<Option<Bytes>>> + Send + '_>> {
        let b = self.0.take();
        Box::pin(async move { Ok(b) })
    }
}

impl Transport for OfflineTransport {
    fn send(&self, req: Request) -> impl Future<Output = fwrepo_fetch::Result<Response>> + Send {
        let file = req.path.strip_prefix(&self.prefix).and_then(|name| self.store.file(name));
        let (status, body) = match file {
            Some(b) => (StatusCode::OK, Some(Bytes::from(b))),
            None => (StatusCode::NOT_FOUND, None),
        };
        let wire = self.wire.clone();
        async move { Ok(Response { status, headers: HeaderMap::new(), body: Body::new(Box::new(Once(body)), wire) }) }
    }

    fn wire(&self) -> &WireCounter {
        &self.wire
    }
}

/// Every signed target, verified from the metadata kept by the last refresh (no network).
pub async fn stored_targets(dir: &ClientDir) -> Result<Vec<TargetInfo>> {
    dir.config()?; // "not initialized" rather than a missing file
    let store = dir.metadata();
    let root = dir.pinned_root()?;
    let opts = FetchOptions::default();
    let prefix = opts.routes.metadata.clone();
    let f = Fetcher::new(OfflineTransport { store: store.clone(), prefix, wire: WireCounter::default() }, opts);
    let mut r = f.refresh(&root, &store, Utc::now(), Limits::default()).await.map_err(|e| match e {
        fwrepo_fetch::Error::Status { status: 404, .. } => {
            Error::Usage("no metadata stored yet: run fwget refresh".into())
        }
        e => Error::Fetch(e),
    })?;
    Ok(f.all_targets(&mut r.updater, &store, Limits::default().max_delegations).await?)
}

/// The chunker sizes signed in the targets' `custom` (the repository fixes them at init).
pub fn signed_chunker(targets: &[TargetInfo]) -> Option<ChunkerParams> {
    targets.iter().find_map(|t| {
        let c: FwCustom = serde_json::from_value(t.file.custom.clone()?).ok()?;
        let s = c.chunker?;
        Some(ChunkerParams { min_size: s.min_size, avg_size: s.avg_size, max_size: s.max_size })
    })
}

/// An inventory from the files installed in `dir`: each file whose length and SHA-256 match
/// a signed target counts as that target's component at its version (the highest, if several).
pub fn inventory_of_dir(dir: &Path, cat: &Catalog) -> Result<BTreeMap<String, Version>> {
    use sha2::Digest as _;
    let mut inv: BTreeMap<String, Version> = BTreeMap::new();
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    for e in rd.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        // A working file may hold a complete blob not yet verified and renamed: not installed.
        if !meta.is_file() || e.file_name().to_string_lossy().starts_with(crate::seeds::WORK_PREFIX) {
            continue;
        }
        let candidates: Vec<_> = cat.entries.iter().filter(|c| c.info.file.length == meta.len()).collect();
        if candidates.is_empty() {
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(|source| Error::Io { path: e.path(), source })?;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        for c in candidates {
            if c.info.file.sha256().is_some_and(|s| s.to_string() == sha) {
                let name = c.custom.component.name.clone();
                if inv.get(&name).is_none_or(|v| *v < c.version) {
                    inv.insert(name, c.version.clone());
                }
            }
        }
    }
    Ok(inv)
}

/// Reads an inventory file: a JSON object of component name → installed version.
pub fn read_inventory(path: &Path) -> Result<BTreeMap<String, Version>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: path.to_owned(), reason: e.to_string() })
}

/// What a fetch or update did, with the totals over every peer.
#[derive(Debug)]
pub struct FetchResult {
    pub outcome: Outcome,
    pub wire: WireStats,
}

impl<T: Transport> Client<T> {
    fn all_peers(&self) -> impl Iterator<Item = &Peer<T>> {
        self.mirrors.iter().chain(std::iter::once(&self.origin))
    }

    /// Every byte received by every peer so far.
    pub fn wire(&self) -> WireStats {
        self.all_peers().fold(WireStats::default(), |a, p| {
            let s = p.fetcher.transport().wire().stats();
            WireStats {
                head_bytes: a.head_bytes + s.head_bytes,
                body_bytes: a.body_bytes + s.body_bytes,
                requests: a.requests + s.requests,
            }
        })
    }

    /// Exchanges `credential` at the origin for a token and stores it (0600).
    pub async fn login(&self, credential: Credential) -> Result<TokenFile> {
        if self.static_host {
            return Err(Error::Usage(
                "the repo is a static host: it issues no tokens and needs none; fetch without logging in".into(),
            ));
        }
        let body = match &credential {
            Credential::Serial(s) => serde_json::json!({ "serial": s }),
            Credential::Agreement(a) => serde_json::json!({ "agreement": a }),
            Credential::Partner { credential, .. } => serde_json::json!({ "partner_credential": credential }),
        };
        self.origin.fetcher.set_bearer(None);
        let (status, bytes) = self.origin.fetcher.post_json("/v1/tokens", &body, MAX_TOKEN_REPLY).await?;
        if !status.is_success() {
            let why = serde_json::from_slice::<ErrorReply>(&bytes)
                .ok()
                .and_then(|e| e.reason.or(e.error))
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(match status.as_u16() {
                401 | 403 => Error::NotEntitled(why),
                _ => Error::Usage(format!("token service refused the request: {why}")),
            });
        }
        let reply: TokenReply = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Usage(format!("token service sent an unreadable answer: {e}")))?;
        let t = TokenFile { token: reply.token, expires_at: reply.expires_at, credential };
        self.dir.save_token(&t)?;
        Ok(t)
    }

    /// Sets the stored token on every peer, renewing it first when it nears expiry.
    pub async fn authorize(&self) -> Result<Option<TokenFile>> {
        let Some(mut t) = self.dir.token()? else { return Ok(None) };
        if t.expires_at - Utc::now().timestamp() < RENEW_BEFORE_SECS {
            t = self.login(t.credential.clone()).await?;
        }
        for p in self.all_peers() {
            p.fetcher.set_bearer(Some(&t.token));
        }
        Ok(Some(t))
    }

    /// The TUF workflow from the pinned root against the origin; metadata is kept as served.
    /// Returns the names of the files fetched and every signed target.
    pub async fn refresh(&self) -> Result<(Vec<String>, Vec<TargetInfo>)> {
        let root = self.dir.pinned_root()?;
        let store = self.dir.metadata();
        let f = &self.origin.fetcher;
        let mut r = f.refresh(&root, &store, Utc::now(), Limits::default()).await?;
        let targets = f.all_targets(&mut r.updater, &store, Limits::default().max_delegations).await?;
        Ok((r.fetched, targets))
    }

    /// Downloads `targets` into `out` with `seeds` (and `out` itself) as seeds.
    pub async fn fetch(
        &self,
        all: &[TargetInfo],
        targets: &[TargetInfo],
        out: &Path,
        seed_roots: &[PathBuf],
        progress: &dyn Progress,
    ) -> Result<FetchResult> {
        let params = signed_chunker(all)
            .ok_or_else(|| Error::Verification("signed metadata carries no chunker sizes".into()))?;
        params.validate().map_err(|e| Error::Verification(format!("signed chunker sizes: {e}")))?;
        std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_owned(), source })?;
        let mut roots = vec![out.to_owned()];
        roots.extend(seed_roots.iter().cloned());
        let mut seeds = Seeds::scan(&self.dir.seeds_path(), &roots, params)?;
        let peers: Vec<&Peer<T>> = self.all_peers().collect();
        let mut notices = Vec::new();
        let mut blobs = Vec::new();
        for t in targets {
            blobs.push(delta::resolve(&peers, t, &mut notices).await?);
        }
        let mut outcome = delta::download(&peers, blobs, out, &mut seeds, progress).await?;
        notices.append(&mut outcome.notices);
        outcome.notices = notices;
        Ok(FetchResult { outcome, wire: self.wire() })
    }
}

/// Looks up `names` among `all`: exact target paths.
pub fn pick_targets(all: &[TargetInfo], names: &[String]) -> Result<Vec<TargetInfo>> {
    names
        .iter()
        .map(|n| {
            let p = TargetPath::new(n.as_str()).map_err(|e| Error::Usage(format!("target {n:?}: {e}")))?;
            all.iter().find(|t| t.path == p).cloned().ok_or_else(|| Error::Usage(format!("no signed target {n:?}")))
        })
        .collect()
}

/// The targets a plan says to download, each once.
pub fn plan_targets(plan: &Plan, cat: &Catalog) -> Vec<TargetInfo> {
    let mut out: Vec<TargetInfo> = Vec::new();
    for item in plan.items.iter().filter(|i| i.action.downloads()) {
        let Some(entry) = cat.entry_of(item) else { continue };
        if !out.iter().any(|t| t.path == entry.info.path) {
            out.push(entry.info.clone());
        }
    }
    out
}
