//! `cargo xtask demo`: builds fwrepo and walks through what an operator sees, in plain words.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root};

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

struct Fwrepo {
    bin: PathBuf,
    data: PathBuf,
}

impl Fwrepo {
    /// Runs `fwrepo ARGS --data DIR`, shows the command, and returns stdout.
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut shown: Vec<String> = vec!["fwrepo".into()];
        shown.extend(args.iter().map(|a| a.to_string()));
        println!("  $ {} --data $DATA", shown.join(" "));
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!("fwrepo {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

fn say(n: usize, text: &str) {
    println!("\n{n}. {text}");
}

fn indent(s: &str) {
    for line in s.lines() {
        println!("     {line}");
    }
}

pub fn run() -> Result<()> {
    println!("Building fwrepo (release profile; the first build compiles RocksDB and takes a while) …");
    cargo(&["build", "--release", "-p", "fwrepo"], &[])?;
    let tmp = std::env::temp_dir().join(format!("fwrepo-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = walk(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn walk(tmp: &Path) -> Result<()> {
    let fw = Fwrepo { bin: target_dir().join("release/fwrepo"), data: tmp.join("data") };
    let releases: Vec<_> =
        fwrepo_synth::Series::new(fwrepo_synth::SeriesParams { releases: 2, ..fwrepo_synth::SeriesParams::small() })
            .collect();
    for r in &releases {
        r.write_to(&tmp.join(&r.id))?;
    }

    say(1, "Create an empty repository data dir. Chunking parameters are fixed here for good.");
    indent(&fw.run(&["init"])?);

    let mut first_blob = None;
    for (n, r) in releases.iter().enumerate() {
        say(
            2 + n,
            &format!("Store the {} component files of {} (a synthetic SPP release).", r.components.len(), r.name),
        );
        let files: Vec<String> =
            r.components.iter().map(|c| tmp.join(&r.id).join("firmware").join(&c.file).display().to_string()).collect();
        let mut args = vec!["ingest"];
        args.extend(files.iter().map(String::as_str));
        let out = fw.run(&args)?;
        let (mut total, mut new) = (0u64, 0u64);
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            total += f[1].parse::<u64>()?;
            new += f[5].parse::<u64>()?;
            first_blob.get_or_insert_with(|| (f[0].to_owned(), PathBuf::from(f[8])));
        }
        indent(out.lines().take(3).collect::<Vec<_>>().join("\n").as_str());
        println!("     … {} files, {} bytes, of which {} bytes were new to the store.", files.len(), total, new);
        if n > 0 {
            println!(
                "   Only the chunks that changed since the previous release were stored: {:.1}% of the release.",
                100.0 * new as f64 / total as f64
            );
        }
    }

    say(4, "What the store holds: identical chunks are kept once across releases.");
    indent(&fw.run(&["stats"])?);

    let (blob, path) = first_blob.context("no blob was stored")?;
    say(5, "Read back bytes 1000-4999 of the first blob and compare with the original file.");
    let out = Command::new(&fw.bin).args(["cat", "--range", "1000-4999", &blob, "--data"]).arg(&fw.data).output()?;
    println!("  $ fwrepo cat --range 1000-4999 {blob} --data $DATA > range.bin");
    let original = std::fs::read(&path)?;
    if !out.status.success() || out.stdout != original[1000..5000] {
        bail!("the range read back does not match {}", path.display());
    }
    println!("     4000 bytes, identical to the original.");

    say(6, "Check every chunk and blob against its hash.");
    indent(&fw.run(&["fsck"])?);

    say(7, "Bad input gets a clear error and changes nothing:");
    let bad = Command::new(&fw.bin).args(["cat", "0123", "--data"]).arg(&fw.data).output()?;
    println!("  $ fwrepo cat 0123 --data $DATA");
    indent(String::from_utf8_lossy(&bad.stderr).trim());
    if bad.status.success() {
        bail!("a malformed blob id was accepted");
    }
    println!("\nDemo complete.");
    Ok(())
}
