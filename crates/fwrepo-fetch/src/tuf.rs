//! TUF refresh over a transport: the `fwrepo_tuf::Updater` workflow driven with metadata
//! fetched from the peer, each file bounded by the length the workflow allows, and every
//! accepted file handed to the caller's [`MetadataStore`] exactly as served.

use chrono::{DateTime, Utc};
use fwrepo_tuf::{FileRequest, Limits, Lookup, RoleName, TargetInfo, TargetPath, Updater};
use http::{StatusCode, header};

use crate::error::{BoxError, Error, Result};
use crate::fetch::Fetcher;
use crate::read::read_at_most;
use crate::transport::{Request, Transport};

/// A metadata file kept from an earlier refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMetadata {
    /// The bytes exactly as served.
    pub bytes: Vec<u8>,
    /// The entity tag they were served with, for a conditional request next time.
    pub etag: Option<String>,
}

/// A metadata file the workflow just accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedMetadata {
    pub role: RoleName,
    /// The name it was served under (`3.root.json`, `timestamp.json`, `7.snapshot.json`, …).
    pub name: String,
    /// The bytes exactly as served.
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
}

/// Where verified metadata is kept between refreshes: fwget's client directory, or the
/// mirror's staging area (which switches to it only once the blobs it names are complete).
pub trait MetadataStore: Sync {
    /// The trusted file of `role` (its newest accepted version), if any.
    fn load(&self, role: &RoleName) -> std::result::Result<Option<StoredMetadata>, BoxError>;
    /// Keeps a file the workflow accepted. Files arrive in the workflow's order: roots
    /// oldest first, then timestamp, snapshot, targets, delegated roles.
    fn save(&self, file: &FetchedMetadata) -> std::result::Result<(), BoxError>;
}

/// The outcome of [`Fetcher::refresh`].
#[derive(Debug)]
pub struct Refresh {
    /// Trusted metadata, ready for target lookups.
    pub updater: Updater,
    /// The peer's `timestamp.json` was the one already trusted (a 304, or the same bytes).
    pub timestamp_unchanged: bool,
    /// Names of the files fetched and accepted, in order.
    pub fetched: Vec<String>,
}

enum Answer {
    Body(Vec<u8>, Option<String>),
    NotModified,
    NotFound,
}

fn store_err(source: BoxError) -> Error {
    Error::MetadataStore { source }
}

impl<T: Transport> Fetcher<T> {
    async fn get_metadata(&self, req: &FileRequest, etag: Option<&str>) -> Result<Answer> {
        let path = self.options().routes.metadata(&req.name);
        self.with_retries(|| async {
            let mut r = Request::get(&path);
            r.if_none_match = etag.map(str::to_owned);
            let (mut resp, _) = self.send(r).await?;
            match resp.status {
                StatusCode::OK => {
                    let tag = resp.headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let bytes =
                        read_at_most(&mut resp.body, req.max_length, &path, self.options().idle_timeout).await?;
                    Ok(Answer::Body(bytes, tag))
                }
                StatusCode::NOT_MODIFIED if etag.is_some() => Ok(Answer::NotModified),
                StatusCode::NOT_FOUND => Ok(Answer::NotFound),
                s => Err(Error::Status { path: path.clone(), status: s.as_u16() }),
            }
        })
        .await
    }

    async fn require(&self, req: &FileRequest, etag: Option<&str>) -> Result<Answer> {
        match self.get_metadata(req, etag).await? {
            Answer::NotFound => Err(Error::Status {
                path: self.options().routes.metadata(&req.name),
                status: StatusCode::NOT_FOUND.as_u16(),
            }),
            a => Ok(a),
        }
    }

    /// Runs the TUF client workflow from the stored root (or `pinned_root` on the first
    /// run): the root chain, then timestamp (conditional on its stored ETag), snapshot and
    /// top-level targets. A stored file the new metadata still names is reused instead of
    /// fetched; every check (signatures, thresholds, rollback, freeze, mix-and-match) is the
    /// `Updater`'s. When nothing changed upstream this is one request answered 304.
    pub async fn refresh(
        &self,
        pinned_root: &[u8],
        store: &dyn MetadataStore,
        now: DateTime<Utc>,
        limits: Limits,
    ) -> Result<Refresh> {
        let tuf = |name: &str| {
            let name = name.to_owned();
            move |source| Error::Metadata { name, source }
        };
        let stored_root = store.load(&RoleName::root()).map_err(store_err)?;
        let root = stored_root.as_ref().map_or(pinned_root, |s| s.bytes.as_slice());
        let mut up = Updater::new(root, now, limits).map_err(tuf("root.json"))?;
        let mut fetched = Vec::new();
        // The chain ends at the first missing version; the updater bounds its length.
        loop {
            let req = up.next_root_request();
            let Answer::Body(bytes, etag) = self.get_metadata(&req, None).await? else { break };
            up.update_root(&bytes).map_err(tuf(&req.name))?;
            store.save(&FetchedMetadata { role: req.role, name: req.name.clone(), bytes, etag }).map_err(store_err)?;
            fetched.push(req.name);
        }
        up.finish_root().map_err(tuf("root"))?;

        // Earlier files, for rollback checks and reuse; ones the current root does not trust
        // are simply not offered.
        let stored_ts = store.load(&RoleName::timestamp()).map_err(store_err)?;
        let ts_trusted = stored_ts.as_ref().is_some_and(|s| up.load_trusted_timestamp(&s.bytes).is_ok());
        if let Some(s) = store.load(&RoleName::snapshot()).map_err(store_err)? {
            let _ = up.load_trusted_snapshot(&s.bytes);
        }

        let req = up.timestamp_request();
        let etag = if ts_trusted { stored_ts.as_ref().and_then(|s| s.etag.as_deref()) } else { None };
        let timestamp_unchanged = match self.require(&req, etag).await? {
            Answer::NotModified => {
                let s = stored_ts.as_ref().expect("a conditional request had a stored file");
                up.update_timestamp(&s.bytes).map_err(tuf(&req.name))?;
                true
            }
            Answer::Body(bytes, etag) => {
                up.update_timestamp(&bytes).map_err(tuf(&req.name))?;
                let same = ts_trusted && stored_ts.as_ref().is_some_and(|s| s.bytes == bytes);
                if !same || stored_ts.as_ref().is_some_and(|s| s.etag != etag) {
                    store
                        .save(&FetchedMetadata { role: req.role, name: req.name.clone(), bytes, etag })
                        .map_err(store_err)?;
                    fetched.push(req.name);
                }
                same
            }
            Answer::NotFound => unreachable!("require maps 404 to an error"),
        };

        if let Some(req) = up.snapshot_request().map_err(tuf("snapshot"))? {
            let Answer::Body(bytes, etag) = self.require(&req, None).await? else { unreachable!("no ETag sent") };
            up.update_snapshot(&bytes).map_err(tuf(&req.name))?;
            store.save(&FetchedMetadata { role: req.role, name: req.name.clone(), bytes, etag }).map_err(store_err)?;
            fetched.push(req.name);
        }

        let top = RoleName::targets();
        let stored = store.load(&top).map_err(store_err)?;
        if stored.is_none_or(|s| up.update_targets(&s.bytes).is_err()) {
            let req = up.targets_request(&top).map_err(tuf("targets"))?;
            let Answer::Body(bytes, etag) = self.require(&req, None).await? else { unreachable!("no ETag sent") };
            up.update_targets(&bytes).map_err(tuf(&req.name))?;
            store.save(&FetchedMetadata { role: req.role, name: req.name.clone(), bytes, etag }).map_err(store_err)?;
            fetched.push(req.name);
        }
        Ok(Refresh { updater: up, timestamp_unchanged, fetched })
    }

    async fn load_delegated(
        &self,
        up: &mut Updater,
        role: &RoleName,
        delegator: &RoleName,
        req: &FileRequest,
        store: &dyn MetadataStore,
    ) -> Result<()> {
        let stored = store.load(role).map_err(store_err)?;
        if stored.is_some_and(|s| up.update_delegated_targets(role, delegator, &s.bytes).is_ok()) {
            return Ok(());
        }
        let Answer::Body(bytes, etag) = self.require(req, None).await? else { unreachable!("no ETag sent") };
        up.update_delegated_targets(role, delegator, &bytes)
            .map_err(|source| Error::Metadata { name: req.name.clone(), source })?;
        store.save(&FetchedMetadata { role: role.clone(), name: req.name.clone(), bytes, etag }).map_err(store_err)
    }

    /// Looks `path` up in the trusted metadata, loading the delegated roles the search needs
    /// (reused from `store` when still current). `None` when no trusted role signs it.
    pub async fn find_target(
        &self,
        up: &mut Updater,
        path: &TargetPath,
        store: &dyn MetadataStore,
    ) -> Result<Option<TargetInfo>> {
        loop {
            match up.find_target(path).map_err(|source| Error::Metadata { name: path.to_string(), source })? {
                Lookup::Found(info) => return Ok(Some(info)),
                Lookup::NotFound => return Ok(None),
                Lookup::NeedRole { role, delegator, request } => {
                    self.load_delegated(up, &role, &delegator, &request, store).await?;
                }
            }
        }
    }

    /// Loads every delegated role reachable from top-level targets (at most
    /// `limits.max_delegations`) and returns every target they sign, the first signer of a
    /// path winning as in a search. For the mirror, which carries everything in scope.
    pub async fn all_targets(
        &self,
        up: &mut Updater,
        store: &dyn MetadataStore,
        max_roles: usize,
    ) -> Result<Vec<TargetInfo>> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut queue = vec![(RoleName::targets(), RoleName::root())];
        while let Some((role, delegator)) = queue.pop() {
            if !seen.insert(role.clone()) {
                continue;
            }
            if seen.len() > max_roles {
                return Err(Error::Metadata {
                    name: role.to_string(),
                    source: fwrepo_tuf::Error::TooManyDelegations { max: max_roles },
                });
            }
            if up.targets(&role).is_none() {
                let req =
                    up.targets_request(&role).map_err(|source| Error::Metadata { name: role.to_string(), source })?;
                self.load_delegated(up, &role, &delegator, &req, store).await?;
            }
            let paths: Vec<TargetPath> =
                up.targets(&role).expect("loaded above").signed.targets.keys().cloned().collect();
            for path in &paths {
                // Ask the search, so terminating delegations and ordering decide who signs it.
                if let Some(info) = self.find_target(up, path, store).await?
                    && !out.iter().any(|t: &TargetInfo| t.path == info.path)
                {
                    out.push(info);
                }
            }
            let file = up.targets(&role).expect("loaded above");
            if let Some(d) = &file.signed.delegations {
                for child in d.roles.iter().rev() {
                    queue.push((child.name.clone(), role.clone()));
                }
            }
        }
        Ok(out)
    }
}
