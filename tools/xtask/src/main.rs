//! `cargo xtask`: set-up, the test suite CI runs, benchmarks, test data and the demo.
//!
//! Everything builds in the release profile: RocksDB is compiled from source and takes most of
//! a cold build, so one profile is built once and shared by tests, benchmarks and the demo.

mod bench_delta;
mod bench_mirror;
mod bench_serve;
mod dedup;
mod demo;
mod interop;
mod setup;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup            install what the build, tests and demo need (libclang-dev, g++, pkg-config,
                   python3-venv, curl) if missing, in one apt-get call
  setup --check    print each requirement and whether it is met; exit 1 if one is not
  test             setup, then rustfmt check, clippy (warnings denied) and every test
  demo             build fwrepo and fwget and walk through publishing, serving, a partner mirror
                   and a client update
  bench ingest [--size-mib N] [--dir DIR]...
                   ingest 1 GiB on ext4 and tmpfs; compare with min(CPU floor, disk write
                   rate) and with casync, restic on the same bytes (installs casync, restic)
  bench serve [--runs N] [--seconds S]
                   fwrepo against nginx (its best of several configurations) on the same
                   bytes: throughput and server CPU per request (installs nginx, wrk)
  bench tokens     token verifications per second on one core, uncached and cached
  bench dedup      bytes each update adds to the store (needs `cargo xtask testdata`)
  bench delta      bytes an update costs: fwget against the chunk ideal, zsync, zchunk, xdelta3,
                   zstd --patch-from and bsdiff on the real and synthetic pairs (installs them)
  bench stages     single-core throughput of each piece of ingest work (the CPU floor)
  bench publish    publish 50 synthetic releases x 200 components; metadata sizes and times
  bench mirror     mirror sync of the synthetic series: MB/s, wire against the chunks it lacked,
                   against rsync (installs rsync; needs `cargo xtask testdata`)
  interop          only the python-tuf interop step of `test`
  fuzz [SECONDS]    run each fuzz target under fuzz/ for SECONDS (default 30); installs
                   cargo-fuzz if missing
  testdata         fetch real firmware pairs (Debian ovmf, grub-efi-amd64-bin) into
                   testdata/real/ and write the synthetic SPP series to testdata/synthetic/
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["setup"] => setup::setup(),
        ["setup", "--check"] => setup::check(),
        ["test"] => test(),
        ["demo"] => {
            setup::setup()?;
            demo::run()
        }
        ["bench", "ingest", rest @ ..] => {
            setup::setup()?;
            // The peers ingest is measured against, on the same bytes.
            for tool in ["casync", "restic"] {
                if !Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output()?.status.success() {
                    apt_install(&[tool])?;
                }
            }
            cargo(&["run", "--release", "-p", "fwrepo-store", "--example", "bench-ingest", "--"], rest)
        }
        ["bench", "serve", rest @ ..] => {
            setup::setup()?;
            bench_serve::run_bench(rest)
        }
        ["bench", "tokens", rest @ ..] => {
            setup::setup()?;
            cargo(&["run", "--release", "-p", "fwrepo-entitle", "--example", "bench-tokens", "--"], rest)
        }
        ["bench", "dedup"] => {
            setup::setup()?;
            dedup::run()
        }
        ["bench", "delta"] => {
            setup::setup()?;
            bench_delta::run()
        }
        ["bench", "stages"] => {
            setup::setup()?;
            cargo(&["run", "--release", "-p", "fwrepo-store", "--example", "bench-stages"], &[])
        }
        ["bench", "publish", rest @ ..] => {
            setup::setup()?;
            cargo(&["run", "--release", "-p", "fwrepo-repo", "--example", "bench-publish", "--"], rest)
        }
        ["bench", "mirror"] => {
            setup::setup()?;
            bench_mirror::run()
        }
        ["interop"] => interop::run_interop(),
        ["fuzz", rest @ ..] => fuzz(rest),
        ["testdata"] => testdata(),
        ["help" | "--help" | "-h"] | [] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown command {:?}\n\n{USAGE}", args.join(" ")),
    }
}

/// The workspace root. `cargo run` names the manifest dir of this run; the path compiled in is
/// only the fallback, because a target dir shared by several clones (CI keeps one outside the
/// clone) may hold an xtask built from another clone, which may be gone.
pub fn root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.ancestors().nth(2).expect("xtask lives at tools/xtask").to_owned()
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Runs `cmd` and returns its stdout; a failure carries its stderr.
pub fn run_capture(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs cargo with `args` then `extra` in the workspace root.
pub fn cargo(args: &[&str], extra: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .args(extra)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn step(name: &str) {
    println!("\n==> {name}");
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Installs Debian packages as root, or says exactly what to run.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let cmd = format!("apt-get update && apt-get install -y {}", packages.join(" "));
    if !is_root() {
        bail!("missing {}; run as root: {cmd}", packages.join(", "));
    }
    println!("installing {} …", packages.join(" "));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {}",
            packages.join(" ")
        ))
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("`{cmd}` failed ({status})");
    }
    Ok(())
}

fn test() -> Result<()> {
    step("setup");
    setup::setup()?;
    step("rustfmt");
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    step("clippy");
    cargo(&["clippy", "--release", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    step("tests");
    cargo(&["test", "--release", "--workspace"], &[])?;
    step("python-tuf interop");
    interop::run_interop()?;
    Ok(())
}

/// Real firmware pairs: two updates of the same Debian firmware packages.
pub const REAL: &[(&str, &str)] = &[
    ("ovmf", "2022.11-6+deb12u1"),
    ("ovmf", "2022.11-6+deb12u2"),
    ("grub-efi-amd64-bin", "2.06-13+deb12u1"),
    ("grub-efi-amd64-bin", "2.06-13+deb12u2"),
];

fn testdata() -> Result<()> {
    let real = root().join("testdata/real");
    let debs = real.join("debs");
    std::fs::create_dir_all(&debs)?;
    for (pkg, ver) in REAL {
        let out = real.join(format!("{pkg}_{ver}"));
        if out.is_dir() {
            println!("have {pkg} {ver}");
            continue;
        }
        step(&format!("download {pkg} {ver}"));
        let spec = format!("{pkg}={ver}");
        let download = || Command::new("apt-get").args(["download", &spec]).current_dir(&debs).status();
        let mut ok = download().is_ok_and(|s| s.success());
        if !ok && is_root() {
            // A fresh machine may have no package lists yet.
            Command::new("apt-get").args(["update", "-qq"]).status().context("apt-get update")?;
            ok = download().is_ok_and(|s| s.success());
        }
        if !ok {
            bail!("`apt-get download {spec}` failed");
        }
        let deb = std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&format!("{pkg}_")) && n.contains(&ver.replace(':', "%3a")) && n.ends_with(".deb")
            })
            .with_context(|| format!("downloaded .deb for {spec} not found in {}", debs.display()))?;
        let tmp = real.join(format!(".{pkg}_{ver}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp).status().context("dpkg-deb")?;
        if !status.success() {
            bail!("dpkg-deb -x {} failed", deb.display());
        }
        std::fs::rename(&tmp, &out)?;
    }
    step("synthetic SPP series");
    let dir = root().join("testdata/synthetic");
    let params = fwrepo_synth::SeriesParams::standard();
    for release in fwrepo_synth::Series::new(params) {
        let out = dir.join(&release.id);
        release.write_to(&out).with_context(|| format!("writing {}", out.display()))?;
        let bytes: usize = release.components.iter().map(|c| c.data.len()).sum();
        println!("{}: {} components, {} MiB", out.display(), release.components.len(), bytes >> 20);
    }
    Ok(())
}

/// Runs every fuzz target for a while. The targets build on stable Rust through
/// RUSTC_BOOTSTRAP (cargo-fuzz passes nightly-only sanitizer flags), in their own target dir.
fn fuzz(args: &[&str]) -> Result<()> {
    let seconds: u32 = match args {
        [] => 30,
        [s] => s.parse().with_context(|| format!("SECONDS must be a whole number, got {s:?}"))?,
        _ => bail!("usage: cargo xtask fuzz [SECONDS]"),
    };
    if !Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        step("install cargo-fuzz");
        cargo(&["install", "cargo-fuzz", "--locked"], &[])?;
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target")).join("fuzz");
    let fuzz_dir = root().join("fuzz");
    let list = Command::new("cargo").args(["fuzz", "list"]).current_dir(&fuzz_dir).output()?;
    let targets = String::from_utf8(list.stdout)?;
    for t in targets.lines().map(str::trim).filter(|t| !t.is_empty()) {
        step(&format!("fuzz {t} for {seconds} s"));
        let status = Command::new("cargo")
            .args(["fuzz", "run", "--release", t, "--", &format!("-max_total_time={seconds}")])
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &target)
            .status()?;
        if !status.success() {
            bail!("fuzz target {t} failed; the crashing input is under fuzz/artifacts/{t}/");
        }
    }
    Ok(())
}
