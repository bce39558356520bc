//! `Catalog`: staging releases into a caller's write batch, and the read queries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use fwrepo_db::{ColumnFamily, Db, Direction, IteratorMode, WriteBatch};
use fwrepo_store::Digest;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::names::{ModelName, ReleaseId, TargetPath, check_name};
use crate::record::{Component, Release, ReleaseSummary, TargetEntry};
use crate::{CF_BLOB_MODELS, CF_MODEL_RELEASES, CF_MODELS, CF_RELEASES, CF_TARGETS, FORMAT};

/// Separates the parts of composite keys; no name, id or path may contain it.
const SEP: u8 = 0;

/// The catalog of a data dir.
#[derive(Clone)]
pub struct Catalog {
    db: Arc<Db>,
}

/// A raw RocksDB entry.
type KeyValue = (Box<[u8]>, Box<[u8]>);

/// One write to make, computed in full before the batch is touched.
struct Put {
    cf: &'static str,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Catalog {
    /// The catalog in `db`, which was opened with (at least) [`crate::COLUMN_FAMILIES`] to
    /// write, or with any column families to read.
    pub fn new(db: Arc<Db>) -> Catalog {
        Catalog { db }
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    // ---- writes ----------------------------------------------------------------------------

    /// Validates `release` against the catalog and adds its records to `batch` without
    /// writing. On error nothing has been added to `batch`.
    ///
    /// Staging reads the database, not the batch: to stage several releases into one batch,
    /// pass them together to [`Catalog::stage_releases`] so they are checked against each
    /// other too.
    pub fn stage_release(&self, release: &Release, batch: &mut WriteBatch) -> Result<()> {
        self.stage_releases(std::slice::from_ref(release), batch)
    }

    /// Validates `releases` against the catalog and against each other, then adds all their
    /// records to `batch` without writing. On error nothing has been added to `batch`.
    pub fn stage_releases(&self, releases: &[Release], batch: &mut WriteBatch) -> Result<()> {
        // Resolve the column families first: a missing one is an error before any write.
        let cfs: HashMap<&'static str, &ColumnFamily> =
            [CF_RELEASES, CF_MODELS, CF_MODEL_RELEASES, CF_BLOB_MODELS, CF_TARGETS]
                .into_iter()
                .map(|name| Ok((name, self.db.require_cf(name)?)))
                .collect::<Result<_>>()?;
        let mut ids: HashSet<&ReleaseId> = HashSet::new();
        // Target paths staged by earlier releases of this call.
        let mut staged_targets: HashMap<&TargetPath, (&ReleaseId, &Component)> = HashMap::new();
        let mut puts = Vec::new();
        for release in releases {
            self.check_release(release)?;
            if !ids.insert(&release.id) {
                return Err(Error::DuplicateRelease { release: release.id.clone() });
            }
            for c in &release.components {
                let earlier = match staged_targets.get(&c.target) {
                    Some(&(id, existing)) => Some((id.clone(), existing.clone())),
                    None => self.target_entries(&c.target)?.into_iter().next(),
                };
                if let Some((existing, e)) = earlier
                    && !e.same_file(c)
                {
                    return Err(Error::TargetConflict {
                        release: release.id.clone(),
                        target: c.target.clone(),
                        existing,
                    });
                }
            }
            for c in &release.components {
                staged_targets.insert(&c.target, (&release.id, c));
            }
            release_puts(release, &mut puts)?;
        }
        for Put { cf, key, value } in puts {
            batch.put_cf(cfs[cf], key, value);
        }
        Ok(())
    }

    /// Stages `release` into a batch of its own and writes it durably.
    pub fn add_release(&self, release: &Release) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.stage_release(release, &mut batch)?;
        self.db.write(batch, true)?;
        Ok(())
    }

    /// Checks one release on its own and against the stored catalog (not its target paths'
    /// history, which [`Catalog::stage_releases`] checks).
    fn check_release(&self, release: &Release) -> Result<()> {
        let id = &release.id;
        if let Err(reason) = check_name(&release.name, crate::MAX_NAME_LEN) {
            return Err(Error::InvalidReleaseName { release: id.clone(), reason });
        }
        if release.components.is_empty() {
            return Err(Error::EmptyRelease { release: id.clone() });
        }
        if self.get_raw(CF_RELEASES, id.as_str().as_bytes())?.is_some() {
            return Err(Error::DuplicateRelease { release: id.clone() });
        }
        let mut per_model = HashSet::new();
        let mut targets = HashSet::new();
        for c in &release.components {
            if c.models.is_empty() {
                return Err(Error::NoModels { release: id.clone(), component: c.name.clone() });
            }
            let mut models = HashSet::new();
            for m in &c.models {
                if !models.insert(m) {
                    return Err(Error::DuplicateModel {
                        release: id.clone(),
                        component: c.name.clone(),
                        model: m.clone(),
                    });
                }
                if !per_model.insert((m, &c.name)) {
                    return Err(Error::DuplicateComponent {
                        release: id.clone(),
                        component: c.name.clone(),
                        model: m.clone(),
                    });
                }
            }
            if !targets.insert(&c.target) {
                return Err(Error::DuplicateTarget { release: id.clone(), target: c.target.clone() });
            }
        }
        Ok(())
    }

    // ---- reads -----------------------------------------------------------------------------

    /// Every server model with at least one release, sorted (by UTF-8 bytes, which is code
    /// point order).
    pub fn models(&self) -> Result<Vec<ModelName>> {
        self.scan(CF_MODELS, &[])?.into_iter().map(|(key, _)| parse_key(CF_MODELS, &key, ModelName::new)).collect()
    }

    /// Whether `model` has at least one release.
    pub fn has_model(&self, model: &ModelName) -> Result<bool> {
        Ok(self.get_raw(CF_MODELS, model.as_str().as_bytes())?.is_some())
    }

    /// The releases that apply to `model`, newest first: by date, then by id as a version.
    pub fn releases_for_model(&self, model: &ModelName) -> Result<Vec<ReleaseSummary>> {
        let mut out: Vec<ReleaseSummary> = self
            .scan(CF_MODEL_RELEASES, &model_prefix(model))?
            .into_iter()
            .map(|(key, value)| decode_json(CF_MODEL_RELEASES, &key, &value))
            .collect::<Result<_>>()?;
        if out.is_empty() {
            return Err(Error::UnknownModel { model: model.clone() });
        }
        out.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Every release id, oldest first (in id order: as versions).
    pub fn release_ids(&self) -> Result<Vec<ReleaseId>> {
        let mut ids: Vec<ReleaseId> = self
            .scan(CF_RELEASES, &[])?
            .into_iter()
            .map(|(key, _)| parse_key(CF_RELEASES, &key, ReleaseId::new))
            .collect::<Result<_>>()?;
        ids.sort();
        Ok(ids)
    }

    /// The release `id`, if it is in the catalog.
    pub fn release(&self, id: &ReleaseId) -> Result<Option<Release>> {
        let key = id.as_str().as_bytes();
        match self.get_raw(CF_RELEASES, key)? {
            Some(value) => decode_json(CF_RELEASES, key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// The components of release `id` that apply to `model`, in manifest order; empty when the
    /// release has none for it.
    pub fn components(&self, id: &ReleaseId, model: &ModelName) -> Result<Vec<Component>> {
        let release = self.release(id)?.ok_or_else(|| Error::UnknownRelease { release: id.clone() })?;
        Ok(release.components_for(model).cloned().collect())
    }

    /// The models `blob` applies to, over all releases, sorted.
    pub fn blob_models(&self, blob: &Digest) -> Result<Vec<ModelName>> {
        self.scan(CF_BLOB_MODELS, blob.as_bytes())?
            .into_iter()
            .map(|(key, _)| {
                let model = &key[Digest::LEN..];
                let text =
                    std::str::from_utf8(model).map_err(|_| corrupt(CF_BLOB_MODELS, &key, "model is not UTF-8"))?;
                ModelName::new(text).map_err(|e| corrupt(CF_BLOB_MODELS, &key, &e.to_string()))
            })
            .collect()
    }

    /// Whether `blob` applies to at least one of `models`: the entitlement check of the
    /// download gate. One point lookup per model, no scan.
    pub fn blob_applies_to<'a>(&self, blob: &Digest, models: impl IntoIterator<Item = &'a ModelName>) -> Result<bool> {
        for model in models {
            if self.get_raw(CF_BLOB_MODELS, &blob_model_key(blob, model))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// What `target` names, merged over every release that publishes it.
    pub fn target(&self, target: &TargetPath) -> Result<Option<TargetEntry>> {
        let entries = self.target_entries(target)?;
        let Some((_, first)) = entries.first() else { return Ok(None) };
        let mut models = BTreeSet::new();
        let mut releases = Vec::new();
        for (id, c) in &entries {
            models.extend(c.models.iter().cloned());
            releases.push(id.clone());
        }
        releases.sort();
        Ok(Some(TargetEntry {
            target: first.target.clone(),
            name: first.name.clone(),
            kind: first.kind,
            version: first.version.clone(),
            blob: first.blob,
            length: first.length,
            sha256: first.sha256,
            models: models.into_iter().collect(),
            releases,
        }))
    }

    /// Every (release, component) stored under `target`.
    fn target_entries(&self, target: &TargetPath) -> Result<Vec<(ReleaseId, Component)>> {
        let prefix = target_prefix(target);
        self.scan(CF_TARGETS, &prefix)?
            .into_iter()
            .map(|(key, value)| {
                let id = parse_key(CF_TARGETS, &key[prefix.len()..], ReleaseId::new)?;
                Ok((id, decode_json(CF_TARGETS, &key, &value)?))
            })
            .collect()
    }

    // ---- raw access ------------------------------------------------------------------------

    /// Reads one value; a column family the database lacks (a reader opened before the writer
    /// created it) holds nothing.
    fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.db.cf(cf) {
            Some(handle) => Ok(self.db.get(handle, key)?),
            None => Ok(None),
        }
    }

    /// Every entry of `cf` whose key starts with `prefix`, in key order.
    fn scan(&self, cf: &str, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        let Some(handle) = self.db.cf(cf) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in self.db.rocks().iterator_cf(handle, IteratorMode::From(prefix, Direction::Forward)) {
            let (key, value) = item.map_err(|e| self.db.err(e))?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }
}

/// Every write of `release`, computed before anything touches the batch.
fn release_puts(release: &Release, puts: &mut Vec<Put>) -> Result<()> {
    let id = &release.id;
    let empty = fwrepo_db::encode(FORMAT, &[]);
    puts.push(Put { cf: CF_RELEASES, key: id.as_str().as_bytes().to_vec(), value: encode_json(release)? });
    let mut models: Vec<&ModelName> = release.components.iter().flat_map(|c| &c.models).collect();
    models.sort();
    models.dedup();
    for model in models {
        let summary = ReleaseSummary {
            id: id.clone(),
            name: release.name.clone(),
            date: release.date,
            components: release.components_for(model).count(),
        };
        puts.push(Put { cf: CF_MODELS, key: model.as_str().as_bytes().to_vec(), value: empty.clone() });
        let mut key = model_prefix(model);
        key.extend_from_slice(id.as_str().as_bytes());
        puts.push(Put { cf: CF_MODEL_RELEASES, key, value: encode_json(&summary)? });
    }
    for c in &release.components {
        for model in &c.models {
            puts.push(Put { cf: CF_BLOB_MODELS, key: blob_model_key(&c.blob, model), value: empty.clone() });
        }
        let mut key = target_prefix(&c.target);
        key.extend_from_slice(id.as_str().as_bytes());
        puts.push(Put { cf: CF_TARGETS, key, value: encode_json(c)? });
    }
    Ok(())
}

fn model_prefix(model: &ModelName) -> Vec<u8> {
    let mut key = model.as_str().as_bytes().to_vec();
    key.push(SEP);
    key
}

fn target_prefix(target: &TargetPath) -> Vec<u8> {
    let mut key = target.as_str().as_bytes().to_vec();
    key.push(SEP);
    key
}

fn blob_model_key(blob: &Digest, model: &ModelName) -> Vec<u8> {
    let mut key = blob.as_bytes().to_vec();
    key.extend_from_slice(model.as_str().as_bytes());
    key
}

fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Serializing these types cannot fail (string keys, no non-finite floats); mapping the
    // error keeps that assumption from becoming a panic.
    let body = serde_json::to_vec(value).map_err(|e| Error::CorruptRecord {
        cf: "(encoding)",
        key: String::new(),
        reason: e.to_string(),
    })?;
    Ok(fwrepo_db::encode(FORMAT, &body))
}

fn decode_json<T: DeserializeOwned>(cf: &'static str, key: &[u8], value: &[u8]) -> Result<T> {
    let body = fwrepo_db::decode(cf, FORMAT, value)?;
    serde_json::from_slice(body).map_err(|e| corrupt(cf, key, &e.to_string()))
}

fn parse_key<T>(cf: &'static str, key: &[u8], parse: impl FnOnce(String) -> Result<T>) -> Result<T> {
    let text = std::str::from_utf8(key).map_err(|_| corrupt(cf, key, "key is not UTF-8"))?;
    parse(text.to_owned()).map_err(|e| corrupt(cf, key, &e.to_string()))
}

fn corrupt(cf: &'static str, key: &[u8], reason: &str) -> Error {
    Error::CorruptRecord { cf, key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_owned() }
}
