//! Publishing over a real data dir, and the checks that must refuse bad input.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use fwrepo_db::IteratorMode;
use fwrepo_repo::keys::{self, Keyring, Role};
use fwrepo_repo::{Error, Manifest, Repo};
use fwrepo_store::{InitOptions, Store};
use fwrepo_tuf::{Limits, Updater};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    keys: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    Store::init(&data, &InitOptions::default()).unwrap();
    keys::generate(&keys, &Role::ALL, 1).unwrap();
    let repo = Repo::open(&data).unwrap();
    repo.init_metadata(&Keyring::load(&keys, &Role::ALL).unwrap(), 1, t0()).unwrap();
    Fixture { _tmp: tmp, dir, data, keys }
}

impl Fixture {
    fn online(&self) -> Keyring {
        Keyring::load(&self.keys, &Role::ONLINE).unwrap()
    }

    /// Writes release `n` of the small synthetic series and returns its manifest path.
    fn synthetic(&self, n: usize) -> PathBuf {
        let r = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).nth(n).unwrap();
        let dir = self.dir.join(format!("rel-{n}"));
        r.write_to(&dir).unwrap();
        dir.join("release.toml")
    }
}

/// Every key and value of the metadata and catalog column families.
fn state(repo: &Repo) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let db = repo.store().db();
    let mut out = Vec::new();
    for cf in fwrepo_repo::column_families() {
        let handle = db.require_cf(cf).unwrap();
        for item in db.rocks().iterator_cf(handle, IteratorMode::Start) {
            let (k, v) = item.unwrap();
            out.push((cf.to_owned(), k.to_vec(), v.to_vec()));
        }
    }
    out
}

fn client_verifies(repo: &Repo, path: &str) -> Vec<u8> {
    let tuf = repo.load().unwrap();
    let mut up = Updater::new(&repo.metadata_file("1.root.json").unwrap().unwrap(), t0(), Limits::default()).unwrap();
    let mut n = 2;
    while let Some(b) = repo.metadata_file(&format!("{n}.root.json")).unwrap() {
        up.update_root(&b).unwrap();
        n += 1;
    }
    up.finish_root().unwrap();
    up.update_timestamp(&repo.metadata_file("timestamp.json").unwrap().unwrap()).unwrap();
    let snap = up.snapshot_request().unwrap().unwrap();
    up.update_snapshot(&repo.metadata_file(&snap.name).unwrap().unwrap()).unwrap();
    let t = up.targets_request(&fwrepo_tuf::RoleName::targets()).unwrap();
    up.update_targets(&repo.metadata_file(&t.name).unwrap().unwrap()).unwrap();
    let target = fwrepo_tuf::TargetPath::new(path).unwrap();
    let file = tuf.all_targets()[&target].clone();
    let blob = file
        .fw_custom()
        .map(|c| c.blake3)
        .unwrap_or_else(|| file.custom.as_ref().unwrap()["blake3"].as_str().unwrap().to_owned());
    let bytes: Vec<u8> = repo.store().read_all(&blob.parse().unwrap()).unwrap().concat();
    fwrepo_tuf::TargetInfo { path: target, file, role: fwrepo_tuf::RoleName::targets() }.verify(&bytes).unwrap();
    bytes
}

#[test]
fn publishes_two_synthetic_releases_and_a_client_verifies_them() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    let mut blobs = std::collections::HashSet::new();
    for n in 0..2 {
        let m = Manifest::load(&f.synthetic(n)).unwrap();
        let report = repo.publish(&m, &f.online(), &f.keys, t0()).unwrap();
        blobs.extend(report.targets.iter().map(|(_, b, _)| *b));
        assert_eq!(report.targets.len(), m.components.len());
        let names: Vec<_> = report.metadata.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names.last(), Some(&"timestamp.json"));
    }
    assert_eq!(repo.catalog().release_ids().unwrap().len(), 2);
    let r = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).nth(1).unwrap();
    let bytes = client_verifies(&repo, &format!("{}/{}", r.id, r.components[0].file));
    assert_eq!(bytes, r.components[0].data);
    assert_eq!(repo.live_blobs().unwrap(), blobs);
}

#[test]
fn every_failed_publish_leaves_metadata_and_catalog_as_they_were() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    let good = f.synthetic(0);
    repo.publish(&Manifest::load(&good).unwrap(), &f.online(), &f.keys, t0()).unwrap();
    let before = state(&repo);

    // Duplicate release id.
    let err = repo.publish(&Manifest::load(&good).unwrap(), &f.online(), &f.keys, t0()).unwrap_err();
    assert!(matches!(err, Error::DuplicateRelease { .. }), "{err}");

    // Bad manifest: a missing file is refused at load, naming manifest and field.
    let second = f.synthetic(1);
    let text = std::fs::read_to_string(&second).unwrap();
    let broken = second.with_file_name("broken.toml");
    std::fs::write(&broken, text.replacen("firmware/", "firmware/missing-", 1)).unwrap();
    let err = Manifest::load(&broken).unwrap_err().to_string();
    assert!(err.contains("broken.toml") && err.contains("component[0].file"), "{err}");

    let m = Manifest::load(&second).unwrap();
    // Missing key.
    let only_ts = f.dir.join("only-ts");
    std::fs::create_dir(&only_ts).unwrap();
    std::fs::copy(f.keys.join("timestamp.key"), only_ts.join("timestamp.key")).unwrap();
    std::fs::copy(f.keys.join("snapshot.key"), only_ts.join("snapshot.key")).unwrap();
    let ring = Keyring::load(&only_ts, &Role::ONLINE).unwrap();
    let err = repo.publish(&m, &ring, &only_ts, t0()).unwrap_err();
    assert!(matches!(err, Error::MissingKey { .. }) && err.to_string().contains("targets.key"), "{err}");

    // Unknown key: a targets key the root does not list.
    let stranger = f.dir.join("stranger");
    keys::generate(&stranger, &Role::ONLINE, 1).unwrap();
    std::fs::remove_file(stranger.join("timestamp.key")).unwrap();
    std::fs::copy(f.keys.join("timestamp.key"), stranger.join("timestamp.key")).unwrap();
    let ring = Keyring::load(&stranger, &Role::ONLINE).unwrap();
    let err = repo.publish(&m, &ring, &stranger, t0()).unwrap_err();
    assert!(matches!(err, Error::UnknownKey { .. }), "{err}");

    assert_eq!(state(&repo), before, "refused publishes changed metadata or catalog");
    // And the good one still goes through afterwards.
    repo.publish(&m, &f.online(), &f.keys, t0()).unwrap();
    assert_ne!(state(&repo), before);
}

#[test]
fn key_files_readable_by_others_or_corrupt_are_refused() {
    let f = fixture();
    let path = f.keys.join("targets.key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    for mode in [0o640, 0o604, 0o660, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Keyring::load(&f.keys, &Role::ONLINE).unwrap_err();
        assert!(matches!(err, Error::KeyPermissions { .. }), "{mode:o}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("targets.key") && msg.contains("chmod 600"), "{msg}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"private\":\"", "\"private\":\"00")).unwrap();
    let err = Keyring::load(&f.keys, &Role::ONLINE).unwrap_err();
    assert!(matches!(err, Error::BadKey { .. }), "{err}");
}

#[test]
fn key_generation_never_overwrites_and_keys_stay_out_of_the_data_dir() {
    let f = fixture();
    let before = std::fs::read(f.keys.join("root.key")).unwrap();
    let err = keys::generate(&f.keys, &[Role::Snapshot, Role::Root], 1).unwrap_err();
    assert!(matches!(err, Error::KeyExists { .. }), "{err}");
    assert_eq!(std::fs::read(f.keys.join("root.key")).unwrap(), before);
    assert!(keys::check_outside(&f.data.join("keys"), &f.data).is_err());
    assert!(keys::check_outside(&f.keys, &f.data).is_ok());
}

#[test]
fn publish_files_adds_and_replaces_but_never_replaces_firmware() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    repo.publish_files(&[("auth/issuers.json", b"{\"keys\":[]}")], &f.online(), &f.keys, t0()).unwrap();
    repo.publish_files(&[("auth/issuers.json", b"{\"keys\":[1]}")], &f.online(), &f.keys, t0()).unwrap();
    assert_eq!(client_verifies(&repo, "auth/issuers.json"), b"{\"keys\":[1]}");
    let m = Manifest::load(&f.synthetic(0)).unwrap();
    repo.publish(&m, &f.online(), &f.keys, t0()).unwrap();
    let before = state(&repo);
    let fw = m.components[0].target.as_str().to_owned();
    assert!(repo.publish_files(&[(fw.as_str(), b"evil")], &f.online(), &f.keys, t0()).is_err());
    assert!(repo.publish_files(&[("../escape", b"x")], &f.online(), &f.keys, t0()).is_err());
    assert_eq!(state(&repo), before);
    // The replaced issuer file's old blob is no longer live; the firmware is.
    let live = repo.live_blobs().unwrap();
    assert_eq!(live.len(), m.components.len() + 1);
}

#[test]
fn refresh_and_root_rotation_keep_clients_verifying() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    repo.publish(&Manifest::load(&f.synthetic(0)).unwrap(), &f.online(), &f.keys, t0()).unwrap();
    let names: Vec<_> = repo.refresh(&f.online(), &f.keys, t0()).unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["timestamp.json"]);
    let new = f.dir.join("new");
    keys::generate(&new, &[Role::Root], 3).unwrap();
    let old = Keyring::load(&f.keys, &Role::ALL).unwrap();
    let new_ring = Keyring::load(&new, &Role::ALL).unwrap();
    // A threshold above the key count is refused and changes nothing.
    let before = state(&repo);
    assert!(repo.rotate_root(&old, &new_ring, Some(4), t0()).is_err());
    // Without the current root key, the new root lacks the old root's threshold.
    let online_only = Keyring::load(&f.keys, &Role::ONLINE).unwrap();
    assert!(repo.rotate_root(&online_only, &new_ring, Some(2), t0()).is_err());
    assert_eq!(state(&repo), before);
    repo.rotate_root(&old, &new_ring, Some(2), t0()).unwrap();
    assert_eq!(repo.root_version().unwrap(), 2);
    let r = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).next().unwrap();
    client_verifies(&repo, &format!("{}/{}", r.id, r.components[0].file));
}

#[test]
fn export_writes_a_consistent_snapshot_tree_and_replaces_an_earlier_one() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    let m = Manifest::load(&f.synthetic(0)).unwrap();
    repo.publish(&m, &f.online(), &f.keys, t0()).unwrap();
    let out = f.dir.join("export");
    let r = repo.export(&out).unwrap();
    assert_eq!(r.targets, m.components.len());
    for name in ["1.root.json", "2.targets.json", "2.snapshot.json", "timestamp.json"] {
        assert!(out.join("metadata").join(name).is_file(), "{name}");
    }
    let tuf = repo.load().unwrap();
    for (path, t) in tuf.all_targets() {
        let file = out.join("targets").join(fwrepo_tuf::layout::target_file(&path, &t.sha256().unwrap()));
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(fwrepo_tuf::Sha256::of(&bytes), t.sha256().unwrap());
    }
    repo.export(&out).unwrap();
    // Beside OUT: the generations (current and the one it replaced) and the export lock.
    let mut beside: Vec<String> = std::fs::read_dir(&f.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".export"))
        .collect();
    beside.sort();
    assert_eq!(beside, [".export.d", ".export.lock"]);
    assert_eq!(std::fs::read_link(&out).unwrap(), std::path::Path::new(".export.d/2"));
    assert_eq!(std::fs::read_dir(f.dir.join(".export.d")).unwrap().count(), 2);
    // A directory that is not an export is never replaced.
    let precious = f.dir.join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), b"keep").unwrap();
    assert!(repo.export(&precious).is_err());
    assert_eq!(std::fs::read(precious.join("notes.txt")).unwrap(), b"keep");
}

#[test]
fn targets_carry_signed_release_facts_and_chunker_sizes() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    let m = Manifest::load(&f.synthetic(0)).unwrap();
    repo.publish(&m, &f.online(), &f.keys, t0()).unwrap();
    let sizes = repo.store().config().chunk_sizes;
    let targets = repo.targets().unwrap();
    let firmware: Vec<_> = targets.values().filter_map(|t| t.fw_custom()).collect();
    assert_eq!(firmware.len(), m.components.len());
    for c in firmware {
        let info = c.release_info.expect("release facts are signed");
        assert_eq!(info.name, m.name);
        assert_eq!(info.date, m.date.to_string());
        let chunker = c.chunker.expect("chunker sizes are signed");
        assert_eq!(
            (chunker.min_size, chunker.avg_size, chunker.max_size),
            (sizes.min_size, sizes.avg_size, sizes.max_size)
        );
    }
}

/// Every file of the export `out` shows, with its bytes; panics if `out` is missing.
fn tree(out: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, files: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                files.push((path.strip_prefix(root).unwrap().to_owned(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(out, out, &mut files);
    files.sort();
    files
}

/// Before the fix, export renamed OUT away and then the new tree in: for a moment (and for good
/// after a crash there) there was no OUT, and a web server answered 404 for everything.
#[test]
fn out_always_exists_and_is_complete_across_repeated_exports() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    repo.publish(&Manifest::load(&f.synthetic(0)).unwrap(), &f.online(), &f.keys, t0()).unwrap();
    let out = f.dir.join("export");
    repo.export(&out).unwrap();
    let expected = tree(&out);
    assert!(expected.len() > 5);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (out, expected, stop) = (out.clone(), expected.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut looks = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Each file opened through OUT, one at a time, as a web server would.
                for (name, bytes) in &expected {
                    let got = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{}: {e}", name.display()));
                    assert_eq!(&got, bytes, "{}", name.display());
                }
                looks += 1;
            }
            looks
        })
    };
    for _ in 0..15 {
        repo.export(&out).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    assert_eq!(tree(&out), expected);
}

/// An export written by an older fwrepo (a plain directory) becomes the symlink layout without
/// a moment with no OUT, and whatever the older version's interrupted exports left goes.
#[test]
fn export_migrates_a_plain_directory_out_from_an_older_version() {
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    repo.publish(&Manifest::load(&f.synthetic(0)).unwrap(), &f.online(), &f.keys, t0()).unwrap();
    let fresh = f.dir.join("fresh");
    repo.export(&fresh).unwrap();
    let expected = tree(&fresh);
    // The older layout: OUT a plain directory, plus the temporary directory of a crashed run.
    let out = f.dir.join("export");
    for (name, bytes) in &expected {
        let path = out.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    std::fs::create_dir_all(f.dir.join(".export.tmp-4242/metadata")).unwrap();
    repo.export(&out).unwrap();
    assert!(std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    assert_eq!(tree(&out), expected);
    assert!(!f.dir.join(".export.tmp-4242").exists());
    repo.export(&out).unwrap();
    assert_eq!(tree(&out), expected);
    assert_eq!(std::fs::read_dir(f.dir.join(".export.d")).unwrap().count(), 2);
}

#[test]
fn publish_precomputes_the_deltas_from_each_components_previous_version() {
    use fwrepo_chunk::bases::choose_bases;
    use fwrepo_chunk::delta::{self, BasesKey, Encoding};
    let f = fixture();
    let repo = Repo::open(&f.data).unwrap();
    let (m0, m1) = (Manifest::load(&f.synthetic(0)).unwrap(), Manifest::load(&f.synthetic(1)).unwrap());
    let first = repo.publish(&m0, &f.online(), &f.keys, t0()).unwrap();
    assert_eq!(first.deltas_precomputed, 0, "nothing earlier to start from");
    let second = repo.publish(&m1, &f.online(), &f.keys, t0()).unwrap();
    assert!(second.deltas_precomputed > 0);
    let store = repo.store();
    let (mut stored, mut based) = (0, 0);
    let old_blobs: std::collections::HashMap<_, _> =
        m0.components.iter().zip(&first.targets).map(|(c, (_, b, _))| (c.name.clone(), *b)).collect();
    for (c, (_, new, _)) in m1.components.iter().zip(&second.targets) {
        let Some(old) = old_blobs.get(&c.name) else { continue };
        assert!(
            m0.components.iter().all(|o| o.name != c.name || o.version <= c.version),
            "the series only moves versions up"
        );
        let seed = store.chunk_index(old).unwrap().chunks;
        let target = store.chunk_index(new).unwrap().chunks;
        for ((t, len), bases) in target.iter().zip(choose_bases(&target, &seed)) {
            if bases.is_empty() {
                continue;
            }
            based += 1;
            let Some((enc, payload)) = store.precomputed_delta(&BasesKey::of(&bases), t).unwrap() else { continue };
            stored += 1;
            assert_ne!(enc, Encoding::Raw, "a raw frame is not worth a record");
            let prefix: Vec<u8> = bases.iter().flat_map(|b| store.read_chunk(b).unwrap().unwrap().to_vec()).collect();
            let prefix = (enc == Encoding::ZstdWithBase).then_some(prefix.as_slice());
            let bytes = delta::decode(enc, &payload, prefix, *len as usize).unwrap();
            assert_eq!(fwrepo_store::Digest::of(&bytes), *t);
        }
    }
    assert!(based > 0 && stored > 0, "{stored} of {based} based chunks precomputed");
    assert_eq!(stored, second.deltas_precomputed);
}
