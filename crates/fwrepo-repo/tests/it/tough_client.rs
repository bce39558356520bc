//! tough (awslabs), a second TUF client written independently of fwrepo-tuf, reads an
//! `fwrepo export` through its filesystem transport, starting from the pinned `1.root.json`:
//! hashed-bin delegations, a root rotation, and a tampered target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fwrepo_repo::keys::{self, Keyring, Role};
use fwrepo_repo::{Manifest, Repo};
use fwrepo_store::{InitOptions, Store};
use tough::{FilesystemTransport, IntoVec as _, RepositoryLoader, TargetName};
use url::Url;

/// Small enough that the targets below spill into hashed bins.
const SPLIT_BYTES: usize = 8_000;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    keys: PathBuf,
    repo: Repo,
}

/// tough checks expiry against the system clock, so this repository is signed "now".
fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    Store::init(&data, &InitOptions::default()).unwrap();
    keys::generate(&keys, &Role::ALL, 1).unwrap();
    let config = fwrepo_tuf::Config { split_bytes: SPLIT_BYTES, ..fwrepo_tuf::Config::default() };
    let repo = Repo::open(&data).unwrap().with_config(config);
    repo.init_metadata(&Keyring::load(&keys, &Role::ALL).unwrap(), 1, now()).unwrap();
    Fixture { _tmp: tmp, dir, keys, repo }
}

impl Fixture {
    fn online(&self) -> Keyring {
        Keyring::load(&self.keys, &Role::ONLINE).unwrap()
    }

    /// Publishes release 0 of the small synthetic series (nested `RELEASE/FILE` targets).
    fn publish_release(&self) -> fwrepo_synth::Release {
        let r = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).next().unwrap();
        let rel = self.dir.join("rel-0");
        r.write_to(&rel).unwrap();
        let m = Manifest::load(&rel.join("release.toml")).unwrap();
        self.repo.publish(&m, &self.online(), &self.keys, now()).unwrap();
        r
    }

    /// Publishes `n` top-level files `note-PREFIX-i.txt` and returns their contents by name.
    fn publish_notes(&self, prefix: &str, n: usize) -> BTreeMap<String, Vec<u8>> {
        let files: BTreeMap<String, Vec<u8>> = (0..n)
            .map(|i| (format!("note-{prefix}-{i:03}.txt"), format!("note {prefix} {i}\n").into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        self.repo.publish_files(&refs, &self.online(), &self.keys, now()).unwrap();
        files
    }

    fn export(&self) -> PathBuf {
        let out = self.dir.join("export");
        self.repo.export(&out).unwrap();
        out
    }
}

async fn tough_load(export: &Path) -> Result<tough::Repository, tough::error::Error> {
    let root = std::fs::read(export.join("metadata/1.root.json")).unwrap();
    let metadata = Url::from_directory_path(export.join("metadata")).unwrap();
    let targets = Url::from_directory_path(export.join("targets")).unwrap();
    RepositoryLoader::new(&root, metadata, targets).transport(FilesystemTransport).load().await
}

async fn tough_read(repo: &tough::Repository, name: &str) -> Result<Option<Vec<u8>>, tough::error::Error> {
    match repo.read_target(&TargetName::new(name).unwrap()).await? {
        Some(stream) => Ok(Some(stream.into_vec().await?)),
        None => Ok(None),
    }
}

/// What tough lists as targets: name → (length, sha256 hex).
fn tough_targets(repo: &tough::Repository) -> BTreeMap<String, (u64, String)> {
    repo.all_targets()
        .map(|(name, t)| (name.raw().to_owned(), (t.length, hex::encode(t.hashes.sha256.clone().into_vec()))))
        .collect()
}

fn our_targets(repo: &Repo) -> BTreeMap<String, (u64, String)> {
    repo.targets()
        .unwrap()
        .into_iter()
        .map(|(p, t)| (p.to_string(), (t.length, t.sha256().unwrap().to_string())))
        .collect()
}

#[tokio::test]
async fn tough_reads_hashed_bins_of_an_export() {
    let f = fixture();
    let release = f.publish_release();
    let notes = f.publish_notes("a", 60);
    let out = f.export();
    let tuf = f.repo.load().unwrap();
    assert!(tuf.delegated().len() >= 16, "no hashed bins: {} delegated roles", tuf.delegated().len());

    let repo = tough_load(&out).await.unwrap();
    // tough loaded every bin and sees exactly the targets fwrepo signed.
    assert_eq!(tough_targets(&repo), our_targets(&f.repo));
    assert!(tuf.delegated().keys().all(|bin| repo.delegated_role(bin.as_str()).is_some()));
    for (name, bytes) in notes.iter().step_by(7) {
        assert_eq!(tough_read(&repo, name).await.unwrap().as_deref(), Some(bytes.as_slice()), "{name}");
    }
    assert_eq!(tough_read(&repo, "note-absent.txt").await.unwrap(), None);
    // Firmware targets live under `RELEASE/`; tough verifies their metadata (above) too. Their
    // bytes it cannot fetch from a spec layout: tough 0.24 asks consistent-snapshot targets at
    // `<sha256>.RELEASE/FILE` where the spec (and python-tuf, and this export) has
    // `RELEASE/<sha256>.FILE`.
    let fw = format!("{}/{}", release.id, release.components[0].file);
    assert!(tough_targets(&repo).contains_key(&fw));
}

#[tokio::test]
async fn tough_refuses_a_tampered_target() {
    let f = fixture();
    let notes = f.publish_notes("t", 40);
    let out = f.export();
    let (name, bytes) = notes.iter().next().unwrap();
    let sha = fwrepo_tuf::Sha256::of(bytes);
    let file = out
        .join("targets")
        .join(fwrepo_tuf::layout::target_file(&fwrepo_tuf::TargetPath::new(name.as_str()).unwrap(), &sha));
    let mut evil = bytes.clone();
    evil[0] ^= 1;
    std::fs::write(&file, &evil).unwrap();
    let repo = tough_load(&out).await.unwrap();
    assert!(tough_read(&repo, name).await.is_err(), "tough accepted a tampered target");
    // The untouched ones still read.
    let (other, other_bytes) = notes.iter().nth(1).unwrap();
    assert_eq!(tough_read(&repo, other).await.unwrap().as_deref(), Some(other_bytes.as_slice()));
}

#[tokio::test]
async fn tough_follows_a_root_rotation_from_the_pinned_root() {
    let f = fixture();
    f.publish_notes("before", 30);
    let new = f.dir.join("new-keys");
    keys::generate(&new, &Role::ALL, 1).unwrap();
    let old = Keyring::load(&f.keys, &Role::ALL).unwrap();
    f.repo.rotate_root(&old, &Keyring::load(&new, &Role::ALL).unwrap(), Some(1), now()).unwrap();
    assert_eq!(f.repo.root_version().unwrap(), 2);
    // Publish after the rotation with the new online keys only.
    let new_online = Keyring::load(&new, &Role::ONLINE).unwrap();
    let after: BTreeMap<String, Vec<u8>> =
        (0..30).map(|i| (format!("note-after-{i:03}.txt"), format!("after {i}\n").into_bytes())).collect();
    let refs: Vec<(&str, &[u8])> = after.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    f.repo.publish_files(&refs, &new_online, &new, now()).unwrap();
    let out = f.export();
    assert!(out.join("metadata/2.root.json").is_file());

    let repo = tough_load(&out).await.unwrap();
    assert_eq!(repo.root().signed.version.get(), 2);
    assert_eq!(tough_targets(&repo), our_targets(&f.repo));
    for (name, bytes) in after.iter().step_by(5) {
        assert_eq!(tough_read(&repo, name).await.unwrap().as_deref(), Some(bytes.as_slice()), "{name}");
    }
    assert!(tough_read(&repo, "note-before-000.txt").await.unwrap().is_some());

    // A root 2 that the old root key did not sign breaks the chain for tough as well.
    let root2 = out.join("metadata/2.root.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&root2).unwrap()).unwrap();
    v["signed"]["expires"] = serde_json::json!("2099-01-01T00:00:00Z");
    std::fs::write(&root2, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(tough_load(&out).await.is_err(), "tough accepted an edited root");
}
