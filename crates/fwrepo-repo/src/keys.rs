//! Key directories: `<role>.key` files (and `<role>-<n>.key` when a role has several keys) in
//! the fwrepo-tuf key-file format, written with mode 0600 and refused when group or others
//! may access them.
//!
//! The online roles (targets, snapshot, timestamp) sign every publish; root keys are needed
//! only to create the repository and to sign a new root, so they may live in a separate
//! directory kept offline. Key directories never live inside the data dir.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use fwrepo_tuf::{RoleName, Root, SigningKey};

use crate::error::{Error, IoContext as _, Result};

/// A top-level TUF role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl Role {
    /// Every role, root first.
    pub const ALL: [Role; 4] = [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp];
    /// The roles that sign every publish and timestamp refresh.
    pub const ONLINE: [Role; 3] = [Role::Targets, Role::Snapshot, Role::Timestamp];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
        }
    }

    pub fn role_name(self) -> RoleName {
        match self {
            Role::Root => RoleName::root(),
            Role::Targets => RoleName::targets(),
            Role::Snapshot => RoleName::snapshot(),
            Role::Timestamp => RoleName::timestamp(),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            Error::Invalid(format!("unknown role {s:?} (expected root, targets, snapshot or timestamp)"))
        })
    }
}

/// One loaded signing key and the file it came from.
#[derive(Debug)]
pub struct LoadedKey {
    pub role: Role,
    pub path: PathBuf,
    pub key: SigningKey,
}

/// Signing keys loaded from one or more key directories.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<LoadedKey>,
}

impl Keyring {
    /// Loads every key file of `roles` found in `dir` (`<role>.key`, `<role>-<n>.key`). A role
    /// with no file is simply absent; a file that is unreadable, malformed or accessible by
    /// group or others is an error.
    pub fn load(dir: &Path, roles: &[Role]) -> Result<Keyring> {
        let mut ring = Keyring::default();
        ring.add_dir(dir, roles)?;
        Ok(ring)
    }

    /// Adds the keys of `roles` found in `dir`.
    pub fn add_dir(&mut self, dir: &Path, roles: &[Role]) -> Result<()> {
        let entries = fs::read_dir(dir).at(dir)?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".key") else { continue };
            let role_part = stem.split_once('-').map_or(stem, |(r, n)| if n.parse::<u32>().is_ok() { r } else { "" });
            if let Some(role) = roles.iter().copied().find(|r| r.as_str() == role_part) {
                found.push((role, entry.path()));
            }
        }
        found.sort();
        for (role, path) in found {
            let key = load_key_file(&path)?;
            self.keys.push(LoadedKey { role, path, key });
        }
        Ok(())
    }

    /// Adds one key.
    pub fn push(&mut self, role: Role, path: PathBuf, key: SigningKey) {
        self.keys.push(LoadedKey { role, path, key });
    }

    /// The keys loaded for `role`.
    pub fn role(&self, role: Role) -> impl Iterator<Item = &LoadedKey> {
        self.keys.iter().filter(move |k| k.role == role)
    }

    /// Every key.
    pub fn all(&self) -> Vec<&SigningKey> {
        self.keys.iter().map(|k| &k.key).collect()
    }

    /// The keys of `roles`, after checking that each role has at least one key file (naming
    /// the file it expected in `dir`) and that every loaded key of those roles is one `root`
    /// lists for its role.
    pub fn signers(&self, root: &Root, roles: &[Role], dir: &Path) -> Result<Vec<&SigningKey>> {
        let mut out = Vec::new();
        for &role in roles {
            let listed = &root.role(&role.role_name())?.keyids;
            let mut any = false;
            for k in self.role(role) {
                if !listed.contains(&k.key.key_id()) {
                    return Err(Error::UnknownKey {
                        path: k.path.clone(),
                        key_id: k.key.key_id().to_string(),
                        role: role.to_string(),
                    });
                }
                out.push(&k.key);
                any = true;
            }
            if !any {
                return Err(Error::MissingKey { role: role.to_string(), path: dir.join(format!("{role}.key")) });
            }
        }
        Ok(out)
    }
}

/// Refuses a private file (a signing key, the issuer keyring) that is not a regular file or
/// that group or others may access.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).at(path)?;
    if !meta.is_file() {
        return Err(Error::BadKey { path: path.to_owned(), reason: "not a regular file".into() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

/// Reads a key file, refusing one that group or others may access.
pub fn load_key_file(path: &Path) -> Result<SigningKey> {
    check_private(path)?;
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).at(path)?);
    SigningKey::from_key_file(&text).map_err(|e| Error::BadKey { path: path.to_owned(), reason: e.to_string() })
}

/// Writes `key` to `path` with mode 0600, durably, refusing to overwrite an existing file.
pub fn write_key_file(path: &Path, key: &SigningKey) -> Result<()> {
    write_private(path, key.to_key_file().as_bytes(), false)
}

/// Writes a private file with mode 0600, durably: temp file, fsync, then into place, then fsync
/// the directory. With `replace` an existing file is replaced atomically (rename); without it an
/// existing file is an error, even one that appears meanwhile (a hard link never replaces).
pub fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    if !replace && path.exists() {
        return Err(Error::KeyExists { path: path.to_owned() });
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp =
        dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("key"), std::process::id()));
    let _ = fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().at(&tmp)?;
    if replace {
        fs::rename(&tmp, path).at(path)?;
    } else {
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::KeyExists { path: path.to_owned() });
            }
            r => r.at(path)?,
        }
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Creates `dir` (mode 0700) if missing.
pub fn create_key_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).at(dir)
}

/// File name of key `n` (1-based) of `count` keys for `role`: `role.key` for a single key,
/// `role-<n>.key` otherwise.
pub fn key_file_name(role: Role, n: usize, count: usize) -> String {
    if count == 1 { format!("{role}.key") } else { format!("{role}-{n}.key") }
}

/// Generates `count` new keys for each of `roles` into `dir`, refusing to overwrite any
/// existing key file (all names are checked before any key is written).
pub fn generate(dir: &Path, roles: &[Role], count: usize) -> Result<Vec<PathBuf>> {
    if count == 0 {
        return Err(Error::Invalid("key count must be at least 1".into()));
    }
    create_key_dir(dir)?;
    let mut paths = Vec::new();
    for &role in roles {
        for n in 1..=count {
            let path = dir.join(key_file_name(role, n, count));
            if path.exists() {
                return Err(Error::KeyExists { path });
            }
            paths.push((role, path));
        }
    }
    let mut written = Vec::new();
    for (_, path) in paths {
        write_key_file(&path, &SigningKey::generate()?)?;
        written.push(path);
    }
    Ok(written)
}

/// Refuses a key directory inside the data dir (or the data dir inside it).
pub fn check_outside(keys: &Path, data: &Path) -> Result<()> {
    let abs = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or(p.to_owned()));
    let (k, d) = (abs(keys), abs(data));
    if k.starts_with(&d) || d.starts_with(&k) {
        return Err(Error::KeysInDataDir { keys: keys.to_owned(), data: data.to_owned() });
    }
    Ok(())
}
