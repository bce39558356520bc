//! Integration tests of the `fwrepo` command line: one binary, a module per concern.

mod cli;
mod crash;
mod entitle;
mod mirror;
mod repo;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fwrepo"))
}

/// Runs `fwrepo ARGS`.
pub fn fwrepo(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("fwrepo runs")
}

pub fn data_arg(dir: &Path) -> String {
    dir.display().to_string()
}

pub fn image(seed: u64, len: usize) -> Vec<u8> {
    fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(seed), len)
}

/// Asserts a command failed with exactly one line on stderr containing `needle`.
#[track_caller]
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "command succeeded; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}
