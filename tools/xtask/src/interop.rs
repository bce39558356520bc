//! The python-tuf interop step of `cargo xtask test`: publish with the `fwrepo` binary,
//! export, and let python-tuf (in a venv under the target dir) verify the export and follow a
//! root rotation, then the same against `fwrepo serve` and against a partner mirror synced
//! from it (`fwrepo serve --mirror`): the mirror's metadata and targets must verify unchanged.
//! Prints `N passed, N failed`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run_capture, target_dir};

/// python-tuf major version the interop is pinned to.
const TUF_REQUIREMENT: &str = "tuf>=7,<8";

fn venv() -> Result<PathBuf> {
    let dir = target_dir().join("python-tuf-venv");
    let python = dir.join("bin/python");
    if !python.exists() {
        run_capture(Command::new("python3").arg("-m").arg("venv").arg(&dir))?;
    }
    let have = Command::new(&python)
        .args(["-c", "import tuf, sys; sys.exit(0 if tuf.__version__.startswith('7.') else 1)"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        run_capture(Command::new(&python).args(["-m", "pip", "install", "-q", TUF_REQUIREMENT]))?;
    }
    Ok(python)
}

pub fn run_interop() -> Result<()> {
    cargo(&["build", "--release", "-p", "fwrepo"], &[])?;
    let python = venv()?;
    let fwrepo = target_dir().join("release/fwrepo");
    let work = target_dir().join("interop");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let (data, keys, export, meta) =
        (work.join("data"), work.join("keys"), work.join("export"), work.join("client-metadata"));
    let fw = |args: &[&dyn AsRef<std::ffi::OsStr>]| -> Result<String> {
        let mut c = Command::new(&fwrepo);
        for a in args {
            c.arg(a);
        }
        run_capture(&mut c)
    };
    let mut releases = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small());
    let mut publish = |n: usize| -> Result<(String, String)> {
        let r = releases.next().context("series ended")?;
        let dir = work.join(format!("release-{n}"));
        r.write_to(&dir)?;
        fw(&[&"publish", &"--data", &data, &"--keys", &keys, &dir.join("release.toml")])?;
        Ok((format!("{}/{}", r.id, r.components[0].file), r.components[0].models[0].clone()))
    };
    fw(&[&"init", &"--data", &data, &"--keys", &keys])?;
    let (first, _) = publish(1)?;
    fw(&[&"export", &"--data", &data, &"--out", &export])?;
    let trusted_root = work.join("trusted-root.json");
    std::fs::copy(export.join("metadata/1.root.json"), &trusted_root)?;

    let script = root().join("tools/interop/python_tuf_client.py");
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut client = |args: &[&str]| -> Result<()> {
        // Runs against the export unless the call names a server; each source keeps its own
        // trusted metadata (a mirror's client starts again from the v1 root).
        let (source, metadata): (Vec<&std::ffi::OsStr>, PathBuf) = match args.iter().position(|a| *a == "--server") {
            Some(i) if args.get(i + 2) == Some(&"--via-mirror") => (vec![], work.join("mirror-client-metadata")),
            Some(_) => (vec![], work.join("server-client-metadata")),
            None => (vec!["--repo".as_ref(), export.as_os_str()], meta.clone()),
        };
        let args: Vec<&str> = args.iter().copied().filter(|a| *a != "--via-mirror").collect();
        let out = Command::new(&python)
            .arg(&script)
            .args(&source)
            .arg("--metadata-dir")
            .arg(&metadata)
            .arg("--trusted-root")
            .arg(&trusted_root)
            .arg("--target-dir")
            .arg(work.join("downloads"))
            .args(&args)
            .output()
            .context("running the python-tuf client")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let p = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
        let f = stdout.lines().filter(|l| l.starts_with("FAIL ")).count();
        passed += p;
        // A crash before any check counts as a failure.
        failed += if f == 0 && !out.status.success() { 1 } else { f };
        Ok(())
    };
    client(&["--target", &first, "--expect-root-version", "1"])?;

    // Rotate root to two new keys (threshold 2), publish again, re-export: python-tuf must
    // follow the chain from its persisted root.
    let new_keys = work.join("new-keys");
    fw(&[&"keys", &"generate", &"--out", &new_keys, &"--role", &"root", &"--count", &"2"])?;
    fw(&[&"root", &"rotate", &"--data", &data, &"--keys", &keys, &"--new-keys", &new_keys, &"--root-threshold", &"2"])?;
    let (second, model) = publish(2)?;
    fw(&[&"export", &"--data", &data, &"--out", &export])?;
    client(&["--target", &first, "--target", &second, "--expect-root-version", "2"])?;

    // Alter the bytes of a target in the export: the client must refuse it.
    let tampered = find_target_file(&export.join("targets"), &second)?;
    let mut bytes = std::fs::read(&tampered)?;
    bytes[0] ^= 0xff;
    std::fs::write(&tampered, bytes)?;
    client(&["--tampered", &second])?;

    // The same through `fwrepo serve`: python-tuf walks the root chain from v1 against the
    // server, downloads a gated target with a bearer token, and is refused (401) without one.
    fw(&[&"keys", &"rotate-issuer", &"--keys", &keys])?;
    let serials = work.join("serials.csv");
    std::fs::write(&serials, format!("serial,model,warranty_end\nINTEROP001,{model},2099-12-31\n"))?;
    fw(&[&"entitlements", &"import", &"--data", &data, &serials])?;
    let token = fw(&[&"token", &"issue", &"--data", &data, &"--keys", &keys, &"--serial", &"INTEROP001"])?;
    let mut server = Command::new(&fwrepo)
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .arg("--keys")
        .arg(&keys)
        .args(["--listen", "127.0.0.1:0", "--refresh-secs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let url = listening(&mut server)?;
    let served = (|| {
        client(&["--server", &url, "--token", token.trim(), "--target", &second, "--expect-root-version", "2"])?;
        client(&["--server", &url, "--denied", &second])
    })();
    // A partner mirror of the origin: python-tuf verifies its metadata (walking the root
    // chain from v1) and its targets as the origin's, with the origin's token.
    let mirrored = served.and_then(|()| {
        let mut mirror = start_mirror(&fwrepo, &work, &data, &keys, &url, &trusted_root, &model)?;
        let r = listening(&mut mirror).and_then(|murl| {
            client(&[
                "--server",
                &murl,
                "--via-mirror",
                "--token",
                token.trim(),
                "--target",
                &second,
                "--expect-root-version",
                "2",
            ])?;
            client(&["--server", &murl, "--via-mirror", "--denied", &second])
        });
        stop(&mut mirror);
        r
    });
    let agreed = fwget_agrees(&python, &url, &trusted_root, &model, &work);
    stop(&mut server);
    mirrored?;
    let (p, f) = agreed?;
    passed += p;
    failed += f;

    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("python-tuf interop: {failed} failed");
    }
    Ok(())
}

/// The base URL a just-started `fwrepo serve` prints on its first line.
fn listening(server: &mut std::process::Child) -> Result<String> {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().context("server stdout")?),
        &mut line,
    )?;
    Ok(line.trim().rsplit(' ').next().unwrap_or_default().to_owned())
}

fn stop(server: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
}

/// A partner that may mirror `model`, the auth documents published, a mirror data dir synced
/// from the origin at `origin`, and `fwrepo serve --mirror` over it (started, not yet read).
fn start_mirror(
    fwrepo: &Path,
    work: &Path,
    data: &Path,
    keys: &Path,
    origin: &str,
    root: &Path,
    model: &str,
) -> Result<std::process::Child> {
    use std::os::unix::fs::PermissionsExt;
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| -> Result<String> {
        let mut c = Command::new(fwrepo);
        for a in args {
            c.arg(a);
        }
        run_capture(&mut c)
    };
    const CREDENTIAL: &str = "interop-partner-credential";
    let digest: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(CREDENTIAL.as_bytes()))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let partners = work.join("partners.csv");
    std::fs::write(
        &partners,
        format!(
            "partner,name,level,status,models,may_mirror,credential_sha256\nINTEROP-P,Interop Mirror,authorized,active,{model},true,{}\n",
            digest
        ),
    )?;
    run(&[&"entitlements", &"import", &"--data", &data, &partners])?;
    run(&[&"auth", &"publish", &"--data", &data, &"--keys", &keys])?;
    let cred = work.join("partner.credential");
    std::fs::write(&cred, format!("{CREDENTIAL}\n"))?;
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600))?;
    let mirror = work.join("mirror");
    run(&[
        &"mirror",
        &"init",
        &"--data",
        &mirror,
        &"--upstream",
        &origin,
        &"--root",
        &root,
        &"--credential-file",
        &cred,
    ])?;
    // The origin server picks up the new records and auth documents within its refresh period.
    let mut last = None;
    for _ in 0..20 {
        match run(&[&"mirror", &"sync", &"--data", &mirror, &"--timeout-secs", &"10"]) {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    if let Some(e) = last {
        return Err(e.context("syncing the interop mirror"));
    }
    Ok(Command::new(fwrepo)
        .arg("serve")
        .arg("--data")
        .arg(&mirror)
        .args(["--mirror", "--listen", "127.0.0.1:0", "--sync-interval", "1h"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?)
}

/// python-tuf's ngclient and `fwget releases/show --json` read the same targets, lengths,
/// sha256 and BLAKE3 ids from the repository `fwrepo serve` serves at `url`: fwget refreshes
/// from `trusted_root` and lists every component of every release for `model`;
/// `python_tuf_agree.py` looks each up. Returns the checks passed and failed.
fn fwget_agrees(python: &Path, url: &str, trusted_root: &Path, model: &str, work: &Path) -> Result<(usize, usize)> {
    cargo(&["build", "--release", "-p", "fwget"], &[])?;
    let fwget_bin = target_dir().join("release/fwget");
    let dir = work.join("fwget-agree");
    let _ = std::fs::remove_dir_all(&dir);
    let fwget = |args: &[&str]| -> Result<serde_json::Value> {
        let out = run_capture(Command::new(&fwget_bin).arg("--dir").arg(&dir).arg("--json").args(args))?;
        serde_json::from_str(&out).with_context(|| format!("fwget {args:?} printed {out:?}"))
    };
    let root = trusted_root.to_str().context("root path")?;
    fwget(&["init", "--repo", url, "--root", root])?;
    fwget(&["refresh"])?;
    let releases = fwget(&["releases", model])?;
    let mut expected = Vec::new();
    for r in releases["releases"].as_array().context("releases")? {
        let id = r["id"].as_str().context("release id")?;
        let shown = fwget(&["show", id])?;
        for c in shown["components"].as_array().context("components")? {
            expected.push(serde_json::json!({
                "target": c["target"], "length": c["length"], "sha256": c["sha256"], "blake3": c["blake3"],
            }));
        }
    }
    let expect = work.join("fwget-targets.json");
    std::fs::write(&expect, serde_json::to_vec(&expected)?)?;
    let out = Command::new(python)
        .arg(root_dir_script("python_tuf_agree.py"))
        .args(["--server", url, "--trusted-root", root])
        .arg("--metadata-dir")
        .arg(work.join("agree-client-metadata"))
        .arg("--expect")
        .arg(&expect)
        .output()
        .context("running the python-tuf agreement check")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    let failed = stdout.lines().filter(|l| l.starts_with("FAIL ")).count();
    Ok((passed, if failed == 0 && !out.status.success() { 1 } else { failed }))
}

fn root_dir_script(name: &str) -> PathBuf {
    root().join("tools/interop").join(name)
}

/// The consistent-snapshot file `DIR/<sha256>.<name>` of target `path` under `targets`.
fn find_target_file(targets: &Path, path: &str) -> Result<PathBuf> {
    let (dir, name) = path.rsplit_once('/').context("target path has a directory")?;
    let suffix = format!(".{name}");
    std::fs::read_dir(targets.join(dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() == 64 + suffix.len() && n.ends_with(&suffix))
        })
        .with_context(|| format!("no exported file for target {path}"))
}
