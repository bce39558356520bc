//! `cargo xtask setup [--check]`: what the build, the tests and the demo need from the system,
//! how each need is detected, and one `apt-get` call for whatever is missing.
//!
//! The libclang check answers the question bindgen (through clang-sys) asks when the RocksDB
//! bindings are generated: is there a loadable `libclang` shared library? `libclang-cpp*` (the
//! C++ interface library) is not one, however much its name looks like it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::{apt_install, is_root};

/// One system requirement: what it is for, the Debian package that provides it, and whether
/// this machine has it (with what was found, or why not).
pub struct Requirement {
    pub what: &'static str,
    pub package: &'static str,
    pub met: bool,
    pub detail: String,
}

/// Is `name` a file name clang-sys would load as libclang: `libclang.so`, `libclang-N.so`,
/// `libclang.so.N` or `libclang-N.so.N` (N made of digits and dots), never `libclang-cpp*`?
pub fn is_libclang_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("libclang") else { return false };
    let version = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    let rest = match rest.strip_prefix('-') {
        Some(r) => match r.find(".so") {
            Some(i) if version(&r[..i]) => &r[i..],
            _ => return false,
        },
        None => rest,
    };
    match rest.strip_prefix(".so") {
        Some("") => true,
        Some(v) => v.strip_prefix('.').is_some_and(version),
        None => false,
    }
}

/// The directories clang-sys searches on Linux, under `prefix` (`/` on a real machine, a
/// temporary tree in tests). `llvm-*` and architecture-triple directories are expanded.
fn search_dirs(prefix: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    for lib in ["usr/lib", "usr/lib64", "usr/local/lib", "lib", "lib64"] {
        let lib = prefix.join(lib);
        dirs.push(lib.clone());
        for sub in subdirs(&lib) {
            let name = sub.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name.starts_with("llvm") {
                dirs.push(sub.join("lib"));
                dirs.push(sub.join("lib64"));
            } else if name.contains("-linux-") {
                dirs.push(sub);
            }
        }
    }
    for base in ["usr/local", "opt"] {
        for sub in subdirs(&prefix.join(base)) {
            if sub.file_name().unwrap_or_default().to_string_lossy().starts_with("llvm") {
                dirs.push(sub.join("lib"));
            }
        }
    }
    dirs
}

fn libclang_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| is_libclang_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Finds a loadable libclang the way clang-sys does: `LIBCLANG_PATH` (a directory, or the
/// library file itself) first, then the system directories under `prefix`.
pub fn find_libclang(prefix: &Path, libclang_path: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = libclang_path {
        if p.is_file() && p.file_name().is_some_and(|n| is_libclang_name(&n.to_string_lossy())) {
            return Some(p.to_owned());
        }
        if let Some(found) = libclang_in(p) {
            return Some(found);
        }
    }
    search_dirs(prefix).iter().find_map(|d| libclang_in(d))
}

/// On a dpkg system: is `package` installed? `None` when there is no dpkg to ask.
fn dpkg_installed(package: &str) -> Option<bool> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", package]).output().ok()?;
    Some(out.status.success() && String::from_utf8_lossy(&out.stdout).trim_end().ends_with(" installed"))
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
}

fn libclang_requirement() -> Requirement {
    let env = std::env::var_os("LIBCLANG_PATH").map(PathBuf::from);
    let found = find_libclang(Path::new("/"), env.as_deref());
    let (met, detail) = match (&found, env.is_some(), dpkg_installed("libclang-dev")) {
        (None, _, _) => (false, "no libclang.so, libclang-N.so or libclang.so.N found".to_owned()),
        // An explicit LIBCLANG_PATH is the user's choice of clang; trust it.
        (Some(p), true, _) => (true, format!("{} (LIBCLANG_PATH)", p.display())),
        // A bare runtime library is not enough on Debian: bindgen also needs clang's headers,
        // which come with libclang-dev. dpkg answers exactly.
        (Some(p), false, Some(false)) => {
            (false, format!("{} present but package libclang-dev (clang headers) is not installed", p.display()))
        }
        (Some(p), false, _) => (true, p.display().to_string()),
    };
    Requirement { what: "libclang (RocksDB bindings)", package: "libclang-dev", met, detail }
}

/// Everything the build, `cargo xtask test` and `cargo xtask demo` need from the system.
pub fn requirements() -> Vec<Requirement> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let have_cxx = runs(&cxx, &["--version"]);
    let have_python = runs("python3", &["--version"]);
    // Debian ships `venv` without `ensurepip` unless python3-venv is installed, and then
    // `python3 -m venv` fails.
    let have_venv = have_python && runs("python3", &["-c", "import venv, ensurepip"]);
    let have_pkg_config = runs("pkg-config", &["--version"]);
    let have_curl = runs("curl", &["--version"]);
    let have_nginx = runs("nginx", &["-v"]);
    let said = |ok: bool, yes: &str, no: &str| if ok { yes.to_owned() } else { no.to_owned() };
    vec![
        libclang_requirement(),
        Requirement {
            what: "C++ compiler (RocksDB)",
            package: "g++",
            met: have_cxx,
            detail: said(have_cxx, &format!("`{cxx} --version` works"), &format!("`{cxx}` not found")),
        },
        Requirement {
            what: "pkg-config (zlib and bzip2 bindings look for system libraries)",
            package: "pkg-config",
            met: have_pkg_config,
            detail: said(have_pkg_config, "`pkg-config --version` works", "`pkg-config` not found"),
        },
        Requirement {
            what: "python3 (python-tuf interop)",
            package: "python3",
            met: have_python,
            detail: said(have_python, "`python3 --version` works", "`python3` not found"),
        },
        Requirement {
            what: "python3 -m venv with pip (python-tuf interop)",
            package: "python3-venv",
            met: have_venv,
            detail: said(have_venv, "venv and ensurepip import", "`import venv, ensurepip` fails"),
        },
        Requirement {
            what: "curl (demo)",
            package: "curl",
            met: have_curl,
            detail: said(have_curl, "`curl --version` works", "`curl` not found"),
        },
        Requirement {
            what: "nginx (fwget tests against a static export)",
            package: "nginx",
            met: have_nginx,
            detail: said(have_nginx, "`nginx -v` works", "`nginx` not found"),
        },
    ]
}

fn print(reqs: &[Requirement]) {
    for r in reqs {
        println!("  [{}] {:<62} {}", if r.met { " ok " } else { "MISS" }, r.what, r.detail);
    }
}

/// `setup --check`: prints each requirement; fails when one is not met. Installs nothing.
pub fn check() -> Result<()> {
    let reqs = requirements();
    print(&reqs);
    let missing: Vec<&str> = reqs.iter().filter(|r| !r.met).map(|r| r.package).collect();
    if !missing.is_empty() {
        bail!(
            "missing: {} (`cargo xtask setup` installs them{})",
            missing.join(" "),
            if is_root() { "" } else { " when run as root" }
        );
    }
    println!("setup: every requirement is met");
    Ok(())
}

/// `setup`: installs whatever is missing in one `apt-get` call, then checks again.
pub fn setup() -> Result<()> {
    let reqs = requirements();
    let mut missing: Vec<&str> = reqs.iter().filter(|r| !r.met).map(|r| r.package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    print(&reqs);
    missing.dedup();
    apt_install(&missing)?;
    let still: Vec<Requirement> = requirements().into_iter().filter(|r| !r.met).collect();
    if !still.is_empty() {
        print(&still);
        bail!("still missing after installing {}", missing.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"\x7fELF").unwrap();
    }

    fn tree(files: &[&str]) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        for f in files {
            touch(&dir.0, f);
        }
        dir
    }

    #[test]
    fn libclang_cpp_alone_is_not_libclang() {
        let t = tree(&["usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", "usr/lib/llvm-14/lib/libclang-cpp.so.14"]);
        assert_eq!(find_libclang(&t.0, None), None);
    }

    #[test]
    fn llvm_versioned_runtime_library_is_found() {
        let t = tree(&["usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", "usr/lib/llvm-14/lib/libclang.so.1"]);
        assert_eq!(find_libclang(&t.0, None), Some(t.0.join("usr/lib/llvm-14/lib/libclang.so.1")));
    }

    #[test]
    fn multiarch_versioned_library_is_found() {
        let t = tree(&["usr/lib/x86_64-linux-gnu/libclang-14.so.1"]);
        assert_eq!(find_libclang(&t.0, None), Some(t.0.join("usr/lib/x86_64-linux-gnu/libclang-14.so.1")));
    }

    #[test]
    fn libclang_path_directory_is_searched() {
        let t = tree(&["opt/clang/lib/libclang.so", "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"]);
        let dir = t.0.join("opt/clang/lib");
        assert_eq!(find_libclang(&t.0.join("nothing-here"), Some(&dir)), Some(dir.join("libclang.so")));
    }

    #[test]
    fn names_clang_sys_loads() {
        for ok in ["libclang.so", "libclang-14.so", "libclang.so.1", "libclang-14.so.1", "libclang-14.0.6.so.14.0"] {
            assert!(is_libclang_name(ok), "{ok}");
        }
        for bad in [
            "libclang-cpp.so.14",
            "libclang-cpp.so",
            "libclang.a",
            "libclangBasic.a",
            "libclang.so.x",
            "libclang-.so",
            "libclang-14.so.",
            "libclang.so14",
        ] {
            assert!(!is_libclang_name(bad), "{bad}");
        }
    }

    /// A self-removing temporary directory (xtask keeps its dependencies to a minimum).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "xtask-setup-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
