//! `cargo xtask bench dedup`: how much of each update the store actually has to add, on the real
//! firmware pairs and the synthetic SPP series of `cargo xtask testdata`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{REAL, cargo, root, run_capture, target_dir};

/// Every regular file under `dir`, sorted.
pub(crate) fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Ingests `files` and returns (bytes, new bytes).
fn ingest(bin: &Path, data: &Path, files: &[PathBuf]) -> Result<(u64, u64)> {
    let out = run_capture(Command::new(bin).arg("ingest").arg("--json").arg("--data").arg(data).args(files))?;
    let (mut total, mut new) = (0, 0);
    for line in out.lines() {
        let field = |name: &str| -> Result<u64> {
            let at = line.find(&format!("\"{name}\":")).with_context(|| format!("no {name} in {line}"))?;
            let rest = &line[at + name.len() + 3..];
            Ok(rest[..rest.find([',', '}']).unwrap_or(rest.len())].trim().parse()?)
        };
        total += field("len")?;
        new += field("new_bytes")?;
    }
    Ok((total, new))
}

/// Ingests each version in turn into one fresh store and prints what each one added.
fn series(bin: &Path, name: &str, versions: &[(String, Vec<PathBuf>)]) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("fwrepo-dedup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    run_capture(Command::new(bin).arg("init").arg("--data").arg(&data))?;
    println!("\n{name}");
    for (label, files) in versions {
        let (total, new) = ingest(bin, &data, files)?;
        println!(
            "  {label:<28} {:>3} files {:>11} bytes  new {:>11} bytes ({:.1}%)",
            files.len(),
            total,
            new,
            100.0 * new as f64 / total.max(1) as f64
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

pub fn run() -> Result<()> {
    let real = root().join("testdata/real");
    let synthetic = root().join("testdata/synthetic");
    if !real.is_dir() || !synthetic.is_dir() {
        bail!("no test data: run `cargo xtask testdata` first");
    }
    cargo(&["build", "--release", "-p", "fwrepo"], &[])?;
    let bin = target_dir().join("release/fwrepo");
    for pkg in ["ovmf", "grub-efi-amd64-bin"] {
        let versions = REAL
            .iter()
            .filter(|(p, _)| *p == pkg)
            .map(|(p, v)| Ok((format!("{p} {v}"), files_under(&real.join(format!("{p}_{v}")))?)))
            .collect::<Result<Vec<_>>>()?;
        series(&bin, pkg, &versions)?;
    }
    let mut releases: Vec<_> =
        std::fs::read_dir(&synthetic)?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    releases.sort();
    let versions = releases
        .iter()
        .map(|r| Ok((format!("SPP {}", r.file_name().unwrap().to_string_lossy()), files_under(&r.join("firmware"))?)))
        .collect::<Result<Vec<_>>>()?;
    series(&bin, "synthetic SPP series", &versions)
}
