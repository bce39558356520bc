//! Repository commands: keys generate, init with signed metadata, publish, export,
//! timestamp, root rotate/sign. Each checks its arguments, keys and files before it writes.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use fwrepo_repo::keys::{self, Keyring, Role};
use fwrepo_repo::{Manifest, Repo};

use crate::{Data, Outcome, store_cmd};

#[derive(clap::Args)]
pub struct KeysGenerateArgs {
    /// Key directory (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Role to make keys for (root, targets, snapshot, timestamp); repeatable. Default: all.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Keys per role: 1 writes `ROLE.key`, N > 1 writes `ROLE-1.key` … `ROLE-N.key`.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    store: store_cmd::InitArgs,
    /// Key directory: also create signed version-1 metadata. Missing keys are generated
    /// there; move the root keys offline afterwards.
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
    /// Root signatures needed; N > 1 generates `root-1.key` … `root-N.key` when the key
    /// directory has no root keys.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "keys")]
    root_threshold: u32,
}

#[derive(clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    data: Data,
    /// Key directory with the online keys (targets, snapshot, timestamp).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// The release manifest.
    #[arg(value_name = "RELEASE.toml")]
    manifest: PathBuf,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    data: Data,
    /// Output path: a symlink to the current tree, switched atomically by each export (an
    /// older export's directory here is migrated; anything else is refused).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct TimestampArgs {
    #[command(flatten)]
    data: Data,
    /// Key directory with the timestamp key (and snapshot/targets keys for when they near
    /// expiry).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
}

#[derive(clap::Subcommand)]
pub enum RootCommand {
    /// Publish root N+1 with new root keys (and new online keys found in --new-keys), signed
    /// by a threshold of the current and of the new root keys.
    Rotate(RootRotateArgs),
    /// Publish root N+1 with the same keys and a fresh expiry.
    Sign(RootSignArgs),
}

#[derive(clap::Args)]
pub struct RootRotateArgs {
    #[command(flatten)]
    data: Data,
    /// Current keys: root keys and the online keys.
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
    /// New keys: `root*.key`, and optionally new `targets.key`, `snapshot.key`, `timestamp.key`.
    #[arg(long, value_name = "DIR")]
    new_keys: PathBuf,
    /// Root threshold of the new root (default: the current one, capped at the new key count).
    #[arg(long, value_name = "N")]
    root_threshold: Option<u32>,
}

#[derive(clap::Args)]
pub struct RootSignArgs {
    #[command(flatten)]
    data: Data,
    /// Keys: root keys (a threshold) and the online keys.
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
}

/// The signing time ("now" for the metadata builder, which never reads the clock itself).
fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

pub fn keys_generate(a: KeysGenerateArgs) -> Result<Outcome> {
    let roles: Vec<Role> = if a.roles.is_empty() {
        Role::ALL.to_vec()
    } else {
        a.roles.iter().map(|r| r.parse()).collect::<Result<_, _>>()?
    };
    for path in keys::generate(&a.out, &roles, a.count)? {
        println!("wrote {}", path.display());
    }
    Ok(Outcome::Ok)
}

pub fn init(a: InitArgs) -> Result<Outcome> {
    let Some(key_dir) = &a.keys else {
        return store_cmd::init(a.store);
    };
    let data = a.store.data.data.clone();
    if a.root_threshold == 0 {
        bail!("--root-threshold must be at least 1");
    }
    keys::check_outside(key_dir, &data)?;
    let exists = data.join("fwrepo.json").exists();
    if exists && Repo::open_read_only(&data)?.has_metadata()? {
        bail!("{} already has signed metadata", data.display());
    }
    // Load what is there first (refusing bad or exposed key files), then fill the gaps.
    keys::create_key_dir(key_dir)?;
    let mut ring = Keyring::load(key_dir, &Role::ALL)?;
    let have_root = ring.role(Role::Root).count();
    if have_root == 0 {
        for path in keys::generate(key_dir, &[Role::Root], a.root_threshold as usize)? {
            println!("wrote {}", path.display());
        }
    } else if have_root < a.root_threshold as usize {
        bail!("{} holds {have_root} root keys, fewer than --root-threshold {}", key_dir.display(), a.root_threshold);
    }
    for role in Role::ONLINE {
        if ring.role(role).next().is_none() {
            for path in keys::generate(key_dir, &[role], 1)? {
                println!("wrote {}", path.display());
            }
        }
    }
    ring = Keyring::load(key_dir, &Role::ALL)?;
    if !exists {
        store_cmd::init(a.store)?;
    }
    let repo = Repo::open(&data)?;
    let files = repo.init_metadata(&ring, a.root_threshold, now())?;
    for f in files {
        println!("signed {}", f.name);
    }
    Ok(Outcome::Ok)
}

fn online_ring(key_dir: &Path, data: &Path) -> Result<Keyring> {
    keys::check_outside(key_dir, data)?;
    Ok(Keyring::load(key_dir, &Role::ONLINE)?)
}

pub fn publish(a: PublishArgs) -> Result<Outcome> {
    let manifest = Manifest::load(&a.manifest)?;
    let ring = online_ring(&a.keys, &a.data.data)?;
    let repo = Repo::open(&a.data.data)?;
    let report = repo.publish(&manifest, &ring, &a.keys, now())?;
    for (target, blob, new_bytes) in &report.targets {
        println!("{blob}  {new_bytes} new bytes  {target}");
    }
    let names: Vec<&str> = report.metadata.iter().map(|f| f.name.as_str()).collect();
    println!("published release {} ({} components); signed {}", report.release, report.targets.len(), names.join(", "));
    if report.deltas_precomputed > 0 {
        println!("precomputed {} chunk deltas from the components' previous versions", report.deltas_precomputed);
    }
    Ok(Outcome::Ok)
}

pub fn export(a: ExportArgs) -> Result<Outcome> {
    let repo = Repo::open_read_only(&a.data.data)?;
    let r = repo.export(&a.out)?;
    println!(
        "exported {} metadata files ({} bytes) and {} targets ({} bytes) to {}",
        r.metadata_files,
        r.metadata_bytes,
        r.targets,
        r.target_bytes,
        a.out.display()
    );
    Ok(Outcome::Ok)
}

pub fn timestamp(a: TimestampArgs) -> Result<Outcome> {
    let ring = online_ring(&a.keys, &a.data.data)?;
    let repo = Repo::open(&a.data.data)?;
    let files = repo.refresh(&ring, &a.keys, now())?;
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    println!("signed {}", names.join(", "));
    Ok(Outcome::Ok)
}

pub fn root(cmd: RootCommand) -> Result<Outcome> {
    let (data, files) = match cmd {
        RootCommand::Rotate(a) => {
            keys::check_outside(&a.keys, &a.data.data)?;
            keys::check_outside(&a.new_keys, &a.data.data)?;
            let old = Keyring::load(&a.keys, &Role::ALL)?;
            let new = Keyring::load(&a.new_keys, &Role::ALL)?;
            if new.role(Role::Root).next().is_none() {
                bail!("{} holds no root keys (root.key or root-N.key)", a.new_keys.display());
            }
            let repo = Repo::open(&a.data.data)?;
            (a.data.data.clone(), repo.rotate_root(&old, &new, a.root_threshold, now())?)
        }
        RootCommand::Sign(a) => {
            keys::check_outside(&a.keys, &a.data.data)?;
            let old = Keyring::load(&a.keys, &Role::ALL)?;
            let repo = Repo::open(&a.data.data)?;
            (a.data.data.clone(), repo.rotate_root(&old, &Keyring::default(), None, now())?)
        }
    };
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    println!("{}: signed {}", data.display(), names.join(", "));
    Ok(Outcome::Ok)
}
