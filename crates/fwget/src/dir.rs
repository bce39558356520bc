//! The client directory: `config.toml`, the pinned root, the token, verified metadata exactly
//! as served, and the seed index.
//!
//! ```text
//! D/config.toml          repo URL, static or not, mirrors, CA file (deny_unknown_fields)
//! D/root.json            the root pinned at `init`
//! D/token.json           token and the credential that renews it (0600)
//! D/metadata/files/N     each accepted file under its served name (hex-encoded)
//! D/metadata/roles/R     which file is the trusted one of role R, and its ETag
//! D/seeds.json           seed index: chunk lists keyed by path, size, mtime, inode
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fwrepo_fetch::{BoxError, FetchedMetadata, MetadataStore, StoredMetadata};
use fwrepo_tuf::RoleName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The origin: metadata, blobs and the token service.
    pub repo: String,
    /// `repo` is a plain HTTP host of a `fwrepo export` (`fwget init --static`): metadata,
    /// target files and chunk indexes at the export's paths, no token service, no token.
    #[serde(default, rename = "static", skip_serializing_if = "std::ops::Not::not")]
    pub static_host: bool,
    /// Mirrors tried before the origin for blobs, in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// PEM file of extra CA certificates (a partner's private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
}

/// What `login` exchanged for a token; kept so a token near expiry is renewed the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Credential {
    Serial(String),
    Agreement(String),
    /// A partner's API credential (read from the file given at login).
    Partner {
        partner: String,
        credential: String,
    },
}

/// `token.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub credential: Credential,
}

/// The client directory.
#[derive(Clone, Debug)]
pub struct ClientDir {
    pub root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Writes `bytes` to `path` through a temporary file, fsynced, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

impl ClientDir {
    pub fn new(root: impl Into<PathBuf>) -> ClientDir {
        ClientDir { root: root.into() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn root_path(&self) -> PathBuf {
        self.root.join("root.json")
    }
    pub fn token_path(&self) -> PathBuf {
        self.root.join("token.json")
    }
    pub fn seeds_path(&self) -> PathBuf {
        self.root.join("seeds.json")
    }

    /// Creates the directory with its config and pinned root. Refuses an initialized one.
    pub fn init(&self, config: &Config, root: &[u8]) -> Result<()> {
        if self.config_path().exists() {
            return Err(Error::Usage(format!("{} is initialized already", self.root.display())));
        }
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(io(&self.root))?;
        write_atomic(&self.root_path(), root, 0o644)?;
        let text = toml::to_string(config).map_err(|e| Error::Usage(format!("config: {e}")))?;
        write_atomic(&self.config_path(), text.as_bytes(), 0o644)
    }

    pub fn config(&self) -> Result<Config> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!("{} is not initialized: run fwget init", self.root.display()))
            } else {
                Error::Io { path: path.clone(), source: e }
            }
        })?;
        toml::from_str(&text).map_err(|e| Error::Config { path, reason: e.to_string() })
    }

    pub fn pinned_root(&self) -> Result<Vec<u8>> {
        let p = self.root_path();
        fs::read(&p).map_err(io(&p))
    }

    pub fn token(&self) -> Result<Option<TokenFile>> {
        let p = self.token_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::Config { path: p, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path: p, source: e }),
        }
    }

    /// Stores the token, readable by the owner only.
    pub fn save_token(&self, t: &TokenFile) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(t).expect("token serializes");
        write_atomic(&self.token_path(), &bytes, 0o600)
    }

    pub fn remove_token(&self) -> Result<bool> {
        let p = self.token_path();
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io { path: p, source: e }),
        }
    }

    pub fn metadata(&self) -> DirStore {
        DirStore { files: self.root.join("metadata/files"), roles: self.root.join("metadata/roles") }
    }
}

/// Verified metadata on disk, kept exactly as served.
#[derive(Clone, Debug)]
pub struct DirStore {
    files: PathBuf,
    roles: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    name: String,
    etag: Option<String>,
}

impl DirStore {
    /// The file served as `name`, if kept.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.files.join(hex::encode(name))).ok()
    }
}

impl MetadataStore for DirStore {
    fn load(&self, role: &RoleName) -> std::result::Result<Option<StoredMetadata>, BoxError> {
        let p = self.roles.join(hex::encode(role.as_str()));
        let entry: RoleEntry = match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match self.file(&entry.name) {
            Some(bytes) => Ok(Some(StoredMetadata { bytes, etag: entry.etag })),
            None => Ok(None),
        }
    }

    fn save(&self, f: &FetchedMetadata) -> std::result::Result<(), BoxError> {
        write_atomic(&self.files.join(hex::encode(&f.name)), &f.bytes, 0o644)?;
        let entry = serde_json::to_vec(&RoleEntry { name: f.name.clone(), etag: f.etag.clone() })?;
        write_atomic(&self.roles.join(hex::encode(f.role.as_str())), &entry, 0o644)?;
        Ok(())
    }
}
