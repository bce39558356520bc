//! `cargo xtask bench publish`: publishes 50 synthetic releases of 200 small components each
//! into a fresh data dir and prints metadata sizes and publish time per release. Files are
//! small so the figures measure metadata work (signing, hashed bins, RocksDB commit), not
//! ingest.

use std::time::Instant;

use chrono::{TimeZone, Utc};
use fwrepo_repo::keys::{self, Keyring, Role};
use fwrepo_repo::{Manifest, Repo};
use fwrepo_store::{InitOptions, Store};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let releases: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let components: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (data, key_dir) = (tmp.path().join("data"), tmp.path().join("keys"));
    Store::init(&data, &InitOptions::default()).expect("init store");
    keys::generate(&key_dir, &Role::ALL, 1).expect("keys");
    let repo = Repo::open(&data).expect("open");
    let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    repo.init_metadata(&Keyring::load(&key_dir, &Role::ALL).unwrap(), 1, now).expect("init metadata");
    let online = Keyring::load(&key_dir, &Role::ONLINE).unwrap();
    let params =
        fwrepo_synth::SeriesParams { seed: 50, releases, models: 36, components, min_size: 512, max_size: 4096 };
    println!("publishing {releases} releases x {components} components (files of 512-4096 bytes)");
    let mut times = Vec::new();
    for (n, release) in fwrepo_synth::Series::new(params).enumerate() {
        let dir = tmp.path().join(format!("rel-{n}"));
        release.write_to(&dir).expect("write release");
        let start = Instant::now();
        let manifest = Manifest::load(&dir.join("release.toml")).expect("manifest");
        repo.publish(&manifest, &online, &key_dir, now).expect("publish");
        times.push(start.elapsed());
        std::fs::remove_dir_all(&dir).ok();
    }
    let tuf = repo.load().expect("load");
    let largest_bin = tuf.delegated().values().map(|f| f.bytes().len()).max().unwrap_or(0);
    println!(
        "targets:    {} entries; top-level targets.json {} bytes",
        tuf.all_targets().len(),
        tuf.targets().bytes().len()
    );
    println!("bins:       {} files, largest {} bytes", tuf.delegated().len(), largest_bin);
    println!("snapshot:   {} bytes", tuf.snapshot().bytes().len());
    println!("timestamp:  {} bytes", tuf.timestamp().bytes().len());
    let mut sorted = times.clone();
    sorted.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "publish time per release: first {:.1} ms, median {:.1} ms, last {:.1} ms",
        ms(times[0]),
        ms(sorted[sorted.len() / 2]),
        ms(*times.last().unwrap())
    );
}
