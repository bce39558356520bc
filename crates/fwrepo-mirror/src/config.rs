//! `DIR/mirror.toml`: what `fwrepo mirror init` records (upstream, token service, credential
//! file, models), the pinned root beside it, and the credential file check.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// File name of the mirror settings in the data dir.
pub const CONFIG_FILE: &str = "mirror.toml";
/// File name of the pinned version-1 root in the data dir.
pub const ROOT_FILE: &str = "mirror-root.json";

/// The mirror's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Base URL of the upstream (the origin, or another mirror).
    pub upstream: String,
    /// Base URL of the token service that exchanges the partner credential (`POST
    /// /v1/tokens`): the origin. Defaults to `upstream`.
    pub token_url: String,
    /// File holding the partner's API credential (mode 0600).
    pub credential_file: PathBuf,
    /// Models to mirror; empty for every model the partner's token covers.
    #[serde(default)]
    pub models: Vec<String>,
    /// Seconds a blob the served metadata no longer names is kept (so a download of the old
    /// version finishes) before `fwrepo mirror gc` removes it. Keep it longer than the longest
    /// download plus the server's refresh period.
    #[serde(default = "default_gc_grace_s")]
    pub gc_grace_s: u64,
}

/// The grace period of `gc_grace_s` when `mirror.toml` does not set it: one hour.
pub const DEFAULT_GC_GRACE_S: u64 = 3600;

fn default_gc_grace_s() -> u64 {
    DEFAULT_GC_GRACE_S
}

fn check_url(path: &Path, what: &str, url: &str) -> Result<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && !url.contains(['?', '#', ' ']);
    if !ok {
        return Err(Error::Config {
            path: path.to_owned(),
            reason: format!("{what} {url:?}: want http(s)://host[:port]"),
        });
    }
    Ok(())
}

impl MirrorConfig {
    /// Checks the URLs and the model names.
    pub fn validate(&self, path: &Path) -> Result<()> {
        check_url(path, "upstream", &self.upstream)?;
        check_url(path, "token_url", &self.token_url)?;
        for m in &self.models {
            fwrepo_catalog::ModelName::new(m.clone())
                .map_err(|e| Error::Config { path: path.to_owned(), reason: format!("model {m:?}: {e}") })?;
        }
        Ok(())
    }

    /// Reads `DIR/mirror.toml`.
    pub fn load(dir: &Path) -> Result<MirrorConfig> {
        let path = dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::DataDir {
                    path: dir.to_owned(),
                    reason: "not a mirror (no mirror.toml); run `fwrepo mirror init`".into(),
                });
            }
            r => r.at(&path)?,
        };
        let config: MirrorConfig =
            toml::from_str(&text).map_err(|e| Error::Config { path: path.clone(), reason: e.to_string() })?;
        config.validate(&path)?;
        Ok(config)
    }

    /// Writes `DIR/mirror.toml` (durably: temporary file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = toml::to_string(self).expect("the config serializes");
        write_durably(&dir.join(CONFIG_FILE), text.as_bytes())
    }

    /// The partner credential: the file's first line, refused unless the file is 0600 (or
    /// stricter).
    pub fn credential(&self) -> Result<String> {
        read_credential(&self.credential_file)
    }
}

/// Reads a credential file, refusing one that group or others may access.
pub fn read_credential(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).at(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::CredentialPermissions { path: path.to_owned(), mode });
    }
    let text = std::fs::read_to_string(path).at(path)?;
    let cred = text.lines().next().unwrap_or("").trim().to_owned();
    if cred.is_empty() {
        return Err(Error::Config { path: path.to_owned(), reason: "the credential file is empty".into() });
    }
    Ok(cred)
}

/// Checks that `bytes` are a signed root of version 1 that verifies with its own keys, as a
/// pinned root must be.
pub fn check_root(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |reason: String| Error::Root { path: path.to_owned(), reason };
    let root = fwrepo_tuf::Signed::<fwrepo_tuf::Root>::from_bytes(&fwrepo_tuf::RoleName::root(), bytes)
        .map_err(|e| bad(e.to_string()))?;
    if root.signed.version != 1 {
        return Err(bad(format!("is version {}, a mirror pins version 1", root.signed.version)));
    }
    // The updater checks the self-signature (threshold of its own root keys).
    fwrepo_tuf::Updater::new(bytes, crate::now(), fwrepo_tuf::Limits::default()).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, None)
}

/// [`write_durably`] for a secret: the file is 0600 from its creation on.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, Some(0o600))
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    if let Some(mode) = mode {
        open.mode(mode);
    }
    let mut f = open.open(&tmp).at(&tmp)?;
    if let Some(mode) = mode {
        // A temporary file left by a crash keeps its old mode: set it before writing.
        f.set_permissions(std::fs::Permissions::from_mode(mode)).at(&tmp)?;
    }
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).at(parent)?;
    }
    Ok(())
}
