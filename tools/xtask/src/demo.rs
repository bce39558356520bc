//! `cargo xtask demo`: builds fwrepo and walks through what an operator and a customer see, in
//! plain words: a signed repository of two SPP releases, the public metadata, an update plan,
//! a denied download, a token exchange, a verified ranged download and a refused token.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{apt_install, cargo, target_dir};

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
fn http(method: &str, url: &str, headers: &[String], body: Option<&str>) -> Result<(u16, Vec<u8>)> {
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

/// Stops the server when the demo ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

pub fn run() -> Result<()> {
    if Command::new("curl").arg("--version").output().is_err() {
        apt_install(&["curl"])?;
    }
    println!("Building fwrepo (release profile; the first build compiles RocksDB and takes a while) …");
    cargo(&["build", "--release", "-p", "fwrepo"], &[])?;
    let tmp = std::env::temp_dir().join(format!("fwrepo-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = walk(&target_dir().join("release/fwrepo"), &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn walk(bin: &Path, tmp: &Path) -> Result<()> {
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

    say(4, "Import customer entitlements: one serial in warranty, one whose warranty has ended.");
    let serials = tmp.join("serials.csv");
    std::fs::write(
        &serials,
        format!("serial,model,warranty_end\nCZ2025DEMO,{model},2099-12-31\nCZ2012OLD1,{model},2015-06-30\n"),
    )?;
    indent(&fwrepo(bin, tmp, &["entitlements", "import", "--data", &data, &serials.display().to_string()])?);

    say(5, "Start the origin server on loopback.");
    println!("  $ fwrepo serve --data $DEMO/data --keys $DEMO/keys --listen 127.0.0.1:0");
    let mut child = Command::new(bin)
        .args(["serve", "--data", &data, "--keys", &keys, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let _server = Server(child);
    let base = line.trim().rsplit(' ').next().context("server address")?.to_owned();
    println!("     {}", line.trim().replace(&tmp.display().to_string(), "$DEMO"));

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
    println!("\nDemo complete: the server is stopped and the temporary repository removed.");
    Ok(())
}
