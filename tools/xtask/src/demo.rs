//! `cargo xtask demo`: builds fwrepo and fwget and walks through what an operator, a partner and
//! a customer see, in plain words: a signed repository of two SPP releases, the public
//! metadata, an update plan, a denied download, a token exchange, a verified ranged download, a
//! refused token, a partner mirror that syncs, serves and learns a revocation, and the `fwget`
//! client installing one release and updating to the next by fetching only what changed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench_serve::Guard;
use crate::{apt_install, cargo, run_capture, target_dir};

fn say(n: usize, text: &str) {
    println!("\n{n}. {text}");
}

fn indent(s: &str) {
    for line in s.lines() {
        println!("     {line}");
    }
}

/// Runs `fwrepo ARGS`, shows the command (with the temp dir as $DEMO), returns stdout.
fn fwrepo(bin: &Path, tmp: &Path, args: &[&str]) -> Result<String> {
    let shown = args.join(" ").replace(&tmp.display().to_string(), "$DEMO");
    println!("  $ fwrepo {shown}");
    let out = Command::new(bin).args(args).output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("fwrepo {shown} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?.replace(&tmp.display().to_string(), "$DEMO"))
}

/// One HTTP exchange through curl: (status, body).
pub(crate) fn http(method: &str, url: &str, headers: &[String], body: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().context("running curl")?;
    let raw = out.stdout;
    let cut = raw.iter().rposition(|&b| b == b'\n').context("no status from curl")?;
    let status = String::from_utf8_lossy(&raw[cut + 1..]).trim().parse().context("curl status")?;
    Ok((status, raw[..cut].to_vec()))
}

fn sha256_hex(bytes: &[u8], tmp: &Path) -> Result<String> {
    let f = tmp.join("download.bin");
    std::fs::write(&f, bytes)?;
    let out = Command::new("sha256sum").arg(&f).output()?;
    Ok(String::from_utf8(out.stdout)?.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Starts `fwrepo serve …` (`args` from `serve` on) and returns the guard that stops it and the
/// base URL from the first line it prints.
pub(crate) fn spawn_server(bin: &Path, args: &[&str]) -> Result<(Guard, String)> {
    let mut child = Command::new(bin).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().context("server stdout")?;
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|b| b.starts_with("http"))
        .with_context(|| format!("fwrepo {} printed no address: {line:?}", args.join(" ")))?;
    Ok((guard, base.to_owned()))
}

pub fn run() -> Result<()> {
    if Command::new("curl").arg("--version").output().is_err() {
        apt_install(&["curl"])?;
    }
    println!("Building fwrepo and fwget (release profile; the first build compiles RocksDB and takes a while) …");
    cargo(&["build", "--release", "-p", "fwrepo", "-p", "fwget"], &[])?;
    let tmp = std::env::temp_dir().join(format!("fwrepo-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let release = target_dir().join("release");
    let result = walk(&release.join("fwrepo"), &release.join("fwget"), &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn walk(bin: &Path, fwget_bin: &Path, tmp: &Path) -> Result<()> {
    let p = |x: &str| tmp.join(x).display().to_string();
    let (data, keys) = (p("data"), p("keys"));
    let releases: Vec<_> =
        fwrepo_synth::Series::new(fwrepo_synth::SeriesParams { releases: 2, ..fwrepo_synth::SeriesParams::small() })
            .collect();
    for r in &releases {
        r.write_to(&tmp.join(&r.id))?;
    }
    let model = releases[0].components[0].models[0].clone();

    say(1, "The vendor creates signing keys (TUF roles and the token issuer) and a signed repository.");
    fwrepo(bin, tmp, &["keys", "generate", "--out", &keys])?;
    fwrepo(bin, tmp, &["keys", "rotate-issuer", "--keys", &keys])?;
    indent(&fwrepo(bin, tmp, &["init", "--data", &data, "--keys", &keys])?);

    for (n, r) in releases.iter().enumerate() {
        say(2 + n, &format!("Publish {} ({} components) from its release.toml.", r.name, r.components.len()));
        let out =
            fwrepo(bin, tmp, &["publish", "--data", &data, "--keys", &keys, &p(&format!("{}/release.toml", r.id))])?;
        let new: u64 = out.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum();
        let total: usize = r.components.iter().map(|c| c.data.len()).sum();
        indent(out.lines().last().unwrap_or_default());
        println!("     {total} bytes of firmware; {new} bytes were new to the store.");
    }

    say(
        4,
        "Import entitlements: two serials in warranty, one whose warranty has ended, and a service partner who may mirror; publish the token issuer keys and revocations for mirrors.",
    );
    let serials = tmp.join("serials.csv");
    std::fs::write(
        &serials,
        format!(
            "serial,model,warranty_end\nCZ2025DEMO,{model},2099-12-31\nCZ2025MIRR,{model},2099-12-31\nCZ2012OLD1,{model},2015-06-30\n"
        ),
    )?;
    let partners = tmp.join("partners.csv");
    std::fs::write(
        &partners,
        format!(
            "partner,name,level,status,models,may_mirror,credential_sha256\nP-DEMO,Demo Partner,authorized,active,{model},true,{}\n",
            sha256_hex(PARTNER_SECRET.as_bytes(), tmp)?
        ),
    )?;
    let (serials, partners) = (serials.display().to_string(), partners.display().to_string());
    indent(&fwrepo(bin, tmp, &["entitlements", "import", "--data", &data, &serials, &partners])?);
    indent(&fwrepo(bin, tmp, &["auth", "publish", "--data", &data, "--keys", &keys])?);

    say(5, "Start the origin server on loopback.");
    println!("  $ fwrepo serve --data $DEMO/data --keys $DEMO/keys --listen 127.0.0.1:0 --refresh-secs 1");
    let (_origin, base) = spawn_server(
        bin,
        &["serve", "--data", &data, "--keys", &keys, "--listen", "127.0.0.1:0", "--refresh-secs", "1"],
    )?;
    println!("     listening on {base}");

    say(6, "Anyone may read the signed metadata; no token needed.");
    let (status, body) = http("GET", &format!("{base}/metadata/timestamp.json"), &[], None)?;
    let ts: Value = serde_json::from_slice(&body)?;
    println!(
        "     GET /metadata/timestamp.json → {status}: timestamp version {}, expires {}, {} signature(s)",
        ts["signed"]["version"],
        ts["signed"]["expires"],
        ts["signatures"].as_array().map_or(0, Vec::len)
    );

    say(7, &format!("A {model} still on {}: what should it install from the newest release?", releases[0].id));
    let inventory: serde_json::Map<String, Value> = releases[0]
        .components
        .iter()
        .filter(|c| c.models.contains(&model))
        .map(|c| (c.name.clone(), Value::from(c.version.clone())))
        .collect();
    let request = serde_json::json!({ "model": model, "inventory": inventory }).to_string();
    let (status, body) = http("POST", &format!("{base}/v1/catalog/plan"), &[], Some(&request))?;
    if status != 200 {
        bail!("plan answered {status}: {}", String::from_utf8_lossy(&body));
    }
    let plan: Value = serde_json::from_slice(&body)?;
    println!("     POST /v1/catalog/plan → {status}: release {}", plan["release"]);
    let items = plan["items"].as_array().context("plan items")?;
    for it in items {
        println!(
            "       {:<12} {:<40} {} → {}",
            it["action"].as_str().unwrap_or_default(),
            it["component"].as_str().unwrap_or_default(),
            it["from"].as_str().unwrap_or("-"),
            it["to"].as_str().unwrap_or_default()
        );
    }
    let item = items
        .iter()
        .find(|i| i["action"] == "upgrade")
        .or_else(|| items.first())
        .context("the plan has no component")?;
    let blob = item["blob"].as_str().context("blob id")?;
    let length = item["length"].as_u64().context("length")?;
    let url = format!("{base}/v1/blobs/{blob}");

    say(8, "Downloading firmware without a token is refused.");
    let (status, _) = http("GET", &url, &[], None)?;
    println!("     GET /v1/blobs/{}… → {status}", &blob[..16]);
    if status != 401 {
        bail!("expected 401, got {status}");
    }

    say(9, "The customer exchanges its in-warranty serial number for a token.");
    let (status, body) = http("POST", &format!("{base}/v1/tokens"), &[], Some(r#"{"serial":"CZ2025DEMO"}"#))?;
    let token: Value = serde_json::from_slice(&body)?;
    let bearer = format!("Authorization: Bearer {}", token["token"].as_str().context("token")?);
    println!("     POST /v1/tokens → {status}: an EdDSA-signed JWT for {model}, valid up to 24 hours");

    say(
        10,
        "It downloads the firmware in two ranged requests and checks its SHA-256 against the published one (the plan and the signed TUF target carry the same value).",
    );
    let half = length / 2;
    let (s1, a) = http("GET", &url, &[bearer.clone(), format!("Range: bytes=0-{}", half - 1)], None)?;
    let (s2, b) = http("GET", &url, &[bearer.clone(), format!("Range: bytes={half}-")], None)?;
    let whole = [a, b].concat();
    let got = sha256_hex(&whole, tmp)?;
    println!("     bytes 0-{} → {s1}, bytes {half}- → {s2}: {} bytes, sha256 {got}", half - 1, whole.len());
    if got != item["sha256"].as_str().unwrap_or_default() || whole.len() as u64 != length {
        bail!("the downloaded firmware does not match its signed hash");
    }
    println!("     matches the signed SHA-256.");

    say(11, "A serial whose warranty has ended gets no token, and the answer does not say why beyond that.");
    let (status, body) = http("POST", &format!("{base}/v1/tokens"), &[], Some(r#"{"serial":"CZ2012OLD1"}"#))?;
    println!("     POST /v1/tokens → {status}: {}", String::from_utf8_lossy(&body).trim());
    if status != 403 {
        bail!("expected 403, got {status}");
    }

    mirror_steps(bin, tmp, &base, &url, item)?;
    client_steps(fwget_bin, tmp, &base, &model, &releases)?;
    println!("\nDemo complete: the servers are stopped and the temporary directories removed.");
    Ok(())
}

const PARTNER_SECRET: &str = "demo-partner-credential-0001";

/// Polls `f` every 200 ms for up to 20 s.
fn wait_for(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f()? {
        if std::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

fn token_for(base: &str, serial: &str) -> Result<String> {
    let (status, body) = http("POST", &format!("{base}/v1/tokens"), &[], Some(&format!(r#"{{"serial":"{serial}"}}"#)))?;
    if status != 200 {
        bail!("POST /v1/tokens for {serial} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    let token: Value = serde_json::from_slice(&body)?;
    Ok(format!("Authorization: Bearer {}", token["token"].as_str().context("token")?))
}

/// The partner mirror: init, sync, serve; a customer downloads from it; a revocation at the
/// origin reaches it at the next sync.
fn mirror_steps(bin: &Path, tmp: &Path, origin: &str, origin_url: &str, item: &Value) -> Result<()> {
    let p = |x: &str| tmp.join(x).display().to_string();
    let (mirror, data, keys) = (p("mirror"), p("data"), p("keys"));
    say(
        12,
        "A service partner sets up a mirror: it pins the vendor's root (obtained out of band), names the origin, and keeps its API credential in a 0600 file.",
    );
    let (status, root) = http("GET", &format!("{origin}/metadata/1.root.json"), &[], None)?;
    if status != 200 {
        bail!("GET /metadata/1.root.json answered {status}");
    }
    std::fs::write(tmp.join("1.root.json"), root)?;
    let cred = tmp.join("partner.credential");
    std::fs::write(&cred, format!("{PARTNER_SECRET}\n"))?;
    std::fs::set_permissions(&cred, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let cred = cred.display().to_string();
    let root = p("1.root.json");
    let init = ["mirror", "init", "--data", &mirror, "--upstream", origin, "--root", &root, "--credential-file", &cred];
    indent(&fwrepo(bin, tmp, &init)?);
    say(
        13,
        "The mirror syncs: it verifies the signed metadata from its pinned root and fetches the chunks of its partner's models, checked against their ids.",
    );
    indent(&fwrepo(bin, tmp, &["mirror", "sync", "--data", &mirror])?);
    indent(&fwrepo(bin, tmp, &["mirror", "sync", "--data", &mirror])?);
    println!("     (the second sync found the upstream unchanged)");

    say(14, "The partner serves its customers; a customer downloads from the mirror with a token from the origin.");
    println!("  $ fwrepo serve --data $DEMO/mirror --mirror --listen 127.0.0.1:0 --refresh-secs 1 --sync-interval 1h");
    let (_mirror, mbase) = spawn_server(
        bin,
        &[
            "serve",
            "--data",
            &mirror,
            "--mirror",
            "--listen",
            "127.0.0.1:0",
            "--refresh-secs",
            "1",
            "--sync-interval",
            "1h",
        ],
    )?;
    println!("     listening on {mbase}");
    let bearer = token_for(origin, "CZ2025MIRR")?;
    let blob = item["blob"].as_str().context("blob id")?;
    let url = origin_url.replacen(origin, &mbase, 1);
    let (status, body) = http("GET", &url, std::slice::from_ref(&bearer), None)?;
    let got = sha256_hex(&body, tmp)?;
    println!("     GET {mbase}/v1/blobs/{}… → {status}: {} bytes, sha256 {got}", &blob[..16], body.len());
    if status != 200 || got != item["sha256"].as_str().unwrap_or_default() {
        bail!("the mirror did not serve the signed firmware");
    }
    println!("     matches the signed SHA-256: the mirror holds no signing key, so it could not forge it.");
    let (status, body) = http("POST", &format!("{mbase}/v1/tokens"), &[], Some(r#"{"serial":"CZ2025MIRR"}"#))?;
    println!("     POST {mbase}/v1/tokens → {status}: {}", String::from_utf8_lossy(&body).trim());

    say(15, "The vendor revokes that customer at the origin; the mirror learns it at its next sync.");
    let before = http("GET", &format!("{origin}/metadata/timestamp.json"), &[], None)?.1;
    indent(&fwrepo(
        bin,
        tmp,
        &["token", "revoke", "--data", &data, "--subject", "serial:CZ2025MIRR", "--keys", &keys],
    )?);
    wait_for("the origin to serve the new revocations", || {
        Ok(http("GET", &format!("{origin}/metadata/timestamp.json"), &[], None)?.1 != before)
    })?;
    let (status, _) = http("GET", &url, std::slice::from_ref(&bearer), None)?;
    println!("     before the mirror syncs: GET from the mirror → {status}");
    indent(&fwrepo(bin, tmp, &["mirror", "sync", "--data", &mirror])?);
    wait_for("the mirror to refuse the revoked token", || {
        Ok(http("GET", &url, std::slice::from_ref(&bearer), None)?.0 == 401)
    })?;
    println!("     after the sync: GET from the mirror → 401; the token is refused without asking the origin.");
    Ok(())
}

/// Runs `fwget --dir $DEMO/fwget ARGS --json`, shows the command, returns its object.
fn fwget(bin: &Path, tmp: &Path, args: &[&str]) -> Result<Value> {
    let shown = args.join(" ").replace(&tmp.display().to_string(), "$DEMO");
    println!("  $ fwget {shown}");
    let dir = tmp.join("fwget");
    let out = run_capture(Command::new(bin).arg("--dir").arg(&dir).args(args).arg("--json"))
        .with_context(|| format!("fwget {shown}"))?;
    serde_json::from_str(out.trim()).with_context(|| format!("fwget {shown} printed {out:?}"))
}

/// The customer's update client against the origin.
fn client_steps(bin: &Path, tmp: &Path, origin: &str, model: &str, releases: &[fwrepo_synth::Release]) -> Result<()> {
    let p = |x: &str| tmp.join(x).display().to_string();
    let (root, out) = (p("1.root.json"), p("installed"));
    say(
        16,
        &format!(
            "A customer's {model} uses fwget: it pins the root, logs in with its in-warranty serial and fetches the signed metadata."
        ),
    );
    fwget(bin, tmp, &["init", "--repo", origin, "--root", &root])?;
    let login = fwget(bin, tmp, &["login", "--serial", "CZ2025DEMO"])?;
    println!("     logged in; token expires at {} (unix time), stored 0600", login["expires_at"]);
    let r = fwget(bin, tmp, &["refresh"])?;
    println!(
        "     metadata verified from the pinned root: {} targets, {} bytes on the wire",
        r["targets"], r["wire_bytes"]
    );

    let first = &releases[0].id;
    say(17, &format!("It plans for its model from the signed metadata alone: nothing installed yet, release {first}."));
    std::fs::create_dir_all(&out)?;
    let plan = fwget(bin, tmp, &["plan", "--model", model, "--installed", &out, "--release", first])?;
    for it in plan["items"].as_array().context("plan items")? {
        println!(
            "       {:<10} {:<40} → {}  {} bytes",
            it["action"].as_str().unwrap_or_default(),
            it["component"].as_str().unwrap_or_default(),
            it["to"].as_str().unwrap_or_default(),
            it["length"]
        );
    }

    say(18, &format!("It installs release {first}: every file verified against its signed hashes."));
    let r = fwget(bin, tmp, &["update", "--model", model, "--out", &out, "--release", first])?;
    let full =
        |r: &Value| -> u64 { r["files"].as_array().map_or(0, |f| f.iter().filter_map(|f| f["length"].as_u64()).sum()) };
    println!(
        "     {} files, {} bytes; {} bytes on the wire",
        r["files"].as_array().map_or(0, Vec::len),
        full(&r),
        r["wire_bytes"]
    );

    let second = &releases[1].id;
    say(
        19,
        &format!(
            "It updates to release {second}: the installed files are seeds, so only the chunks that changed are fetched."
        ),
    );
    let r = fwget(bin, tmp, &["update", "--model", model, "--out", &out])?;
    let (wire, total) = (r["wire_bytes"].as_u64().context("wire_bytes")?, full(&r));
    let seeds: u64 = r["files"].as_array().map_or(0, |f| f.iter().filter_map(|f| f["seed_bytes"].as_u64()).sum());
    println!(
        "     {} files, {total} bytes: {seeds} bytes reused from the installed files, {wire} bytes on the wire ({:.1}% of the full size) in {} requests",
        r["files"].as_array().map_or(0, Vec::len),
        100.0 * wire as f64 / total.max(1) as f64,
        r["requests"]
    );
    println!(
        "     (the demo's files are about 200 KB, a few 64 KiB-average chunks each: a small change inside a chunk still costs that whole chunk)"
    );
    Ok(())
}
