//! `fwget`: the command line of the update client. Exit codes: 0 ok, 1 failure, 2 usage,
//! 3 not entitled, 4 verification failed, 5 network.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fwget::catalog::Catalog;
use fwget::client::{self, Client, FetchResult};
use fwget::delta::Progress;
use fwget::dir::{ClientDir, Config, Credential};
use fwget::{Error, Result, exit};
use fwrepo_fetch::{FetchOptions, HttpTransport};
use serde_json::json;

#[derive(Parser)]
#[command(name = "fwget", version, about = "Signed firmware updates that fetch only the chunks you lack")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// Client directory [env: FWGET_DIR; default: $XDG_DATA_HOME/fwget].
    #[arg(long, global = true, value_name = "D")]
    dir: Option<PathBuf>,
    /// One JSON object per command on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// No progress and no human output (errors still go to stderr).
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Pin the root and record the origin and mirrors.
    Init {
        #[arg(long, value_name = "URL")]
        repo: String,
        /// The repo URL is a plain HTTP server hosting a `fwrepo export` (its root: metadata/,
        /// targets/, chunks/); no token is needed.
        #[arg(long = "static")]
        static_host: bool,
        /// The root metadata to trust (1.root.json from the vendor).
        #[arg(long, value_name = "FILE")]
        root: PathBuf,
        /// A mirror tried before the origin for downloads (repeatable).
        #[arg(long = "mirror", value_name = "URL")]
        mirrors: Vec<String>,
        /// PEM CA certificates to trust as well (a partner's private CA).
        #[arg(long, value_name = "FILE")]
        cacert: Option<PathBuf>,
    },
    /// Exchange a serial, agreement or partner credential for a download token.
    Login(Login),
    /// Forget the stored token.
    Logout,
    /// Fetch and verify the newest signed metadata from the origin.
    Refresh,
    /// Server models the signed metadata covers.
    Models,
    /// Releases for a model, newest first.
    Releases { model: String },
    /// The components of a release.
    Show { release: String },
    /// What to install for a model, from its inventory.
    Plan {
        #[arg(long)]
        model: String,
        #[arg(long, value_name = "FILE", conflicts_with = "installed")]
        inventory: Option<PathBuf>,
        /// Directory of installed firmware files (matched by signed SHA-256).
        #[arg(long, value_name = "DIR")]
        installed: Option<PathBuf>,
        #[arg(long)]
        release: Option<String>,
    },
    /// Download targets by path, with deltas against the seeds.
    Fetch {
        #[arg(required = true)]
        targets: Vec<String>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A file or directory of older versions to reuse chunks from (repeatable).
        #[arg(long = "seed", value_name = "FILE|DIR")]
        seeds: Vec<PathBuf>,
        /// Fetch missing chunks as byte ranges only, never as deltas against seed chunks.
        #[arg(long)]
        no_deltas: bool,
    },
    /// Refresh, plan for a model and download what the plan installs.
    Update {
        #[arg(long)]
        model: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Installed versions (default: what the out dir holds).
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        #[arg(long)]
        release: Option<String>,
        #[arg(long = "seed", value_name = "DIR")]
        seeds: Vec<PathBuf>,
        /// Fetch missing chunks as byte ranges only, never as deltas against seed chunks.
        #[arg(long)]
        no_deltas: bool,
    },
}

#[derive(Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("credential").required(true).multiple(false).args(["serial", "agreement", "partner"])))]
struct Login {
    #[arg(long)]
    serial: Option<String>,
    #[arg(long)]
    agreement: Option<String>,
    /// Partner name; with --credential-file.
    #[arg(long, requires = "credential_file")]
    partner: Option<String>,
    #[arg(long, value_name = "F", requires = "partner")]
    credential_file: Option<PathBuf>,
}

fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FWGET_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("fwget");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/fwget")
}

struct Out {
    json: bool,
    quiet: bool,
}

impl Out {
    /// Prints `value` as JSON, or `text` for a human.
    fn emit(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else if !self.quiet {
            let t = text();
            if !t.is_empty() {
                println!("{t}");
            }
        }
    }
    /// Warnings go to stderr even with --quiet: a peer serving bad data must be heard of.
    fn warn(&self, msg: &str) {
        {
            eprintln!("fwget: warning: {msg}");
        }
    }
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn set(&self, done: u64, total: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FWGET_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let out = Out { json: cli.global.json, quiet: cli.global.quiet };
    let dir = ClientDir::new(cli.global.dir.clone().unwrap_or_else(default_dir));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(run(cli.command, dir, &out)) {
        Ok(()) => exit::OK,
        Err(e) => {
            let code = e.exit_code();
            if out.json {
                println!("{}", json!({ "error": e.to_string(), "exit_code": code }));
            }
            eprintln!("fwget: {e}");
            code
        }
    };
    std::process::exit(code);
}

fn online(dir: &ClientDir) -> Result<Client<HttpTransport>> {
    online_with(dir, true)
}

/// A client whose downloads ask for deltas or, with `deltas` off, ranges only.
fn online_with(dir: &ClientDir, deltas: bool) -> Result<Client<HttpTransport>> {
    client::http_client(dir.clone(), FetchOptions { deltas, ..FetchOptions::default() })
}

fn progress(out: &Out) -> Box<dyn Progress> {
    if out.json || out.quiet || !std::io::stderr().is_terminal() {
        return Box::new(());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("valid template"),
    );
    Box::new(Bar(bar))
}

fn report(out: &Out, r: &FetchResult) {
    for n in &r.outcome.notices {
        out.warn(&n.to_string());
    }
    let files: Vec<_> = r.outcome.files.iter().collect();
    let warnings: Vec<String> = r.outcome.notices.iter().map(|n| n.to_string()).collect();
    out.emit(
        json!({ "files": files, "wire_bytes": r.wire.wire_bytes(), "requests": r.wire.requests, "warnings": warnings }),
        || {
            let mut s = String::new();
            for f in &files {
                s.push_str(&format!(
                    "{}  {} bytes: {} from seeds, {} on the wire in {} requests\n",
                    f.path.display(),
                    f.length,
                    f.seed_bytes,
                    f.wire_bytes,
                    f.requests
                ));
            }
            let full: u64 = files.iter().map(|f| f.length).sum();
            s.push_str(&format!(
                "total: {} bytes on the wire ({} requests) for {} bytes of files",
                r.wire.wire_bytes(),
                r.wire.requests,
                full
            ));
            s
        },
    );
}

async fn run(cmd: Command, dir: ClientDir, out: &Out) -> Result<()> {
    match cmd {
        Command::Init { repo, static_host, root, mirrors, cacert } => {
            let bytes = std::fs::read(&root).map_err(|source| Error::Io { path: root.clone(), source })?;
            // A root that does not verify itself is refused now, not at the first refresh.
            fwrepo_tuf::Updater::new(&bytes, chrono::Utc::now(), fwrepo_tuf::Limits::default())
                .map_err(|e| Error::Verification(format!("{}: {e}", root.display())))?;
            let cacert = cacert.map(|c| std::fs::canonicalize(&c).unwrap_or(c));
            dir.init(&Config { repo: repo.clone(), static_host, mirrors: mirrors.clone(), cacert }, &bytes)?;
            out.emit(json!({ "dir": dir.root, "repo": repo, "static": static_host, "mirrors": mirrors }), || {
                format!("initialized {} for {repo}", dir.root.display())
            });
        }
        Command::Login(l) => {
            let credential = match (l.serial, l.agreement, l.partner, l.credential_file) {
                (Some(s), _, _, _) => Credential::Serial(s),
                (_, Some(a), _, _) => Credential::Agreement(a),
                (_, _, Some(partner), Some(f)) => {
                    let c = std::fs::read_to_string(&f).map_err(|source| Error::Io { path: f.clone(), source })?;
                    Credential::Partner { partner, credential: c.trim().to_owned() }
                }
                _ => return Err(Error::Usage("give --serial, --agreement or --partner with --credential-file".into())),
            };
            let c = online(&dir)?;
            let t = c.login(credential).await?;
            out.emit(json!({ "expires_at": t.expires_at }), || {
                format!(
                    "logged in; token valid until {}",
                    chrono::DateTime::from_timestamp(t.expires_at, 0)
                        .map_or_else(|| t.expires_at.to_string(), |d| d.to_rfc3339())
                )
            });
        }
        Command::Logout => {
            let removed = dir.remove_token()?;
            out.emit(json!({ "logged_out": removed }), || {
                if removed { "logged out".into() } else { "no token stored".into() }
            });
        }
        Command::Refresh => {
            let c = online(&dir)?;
            let (fetched, targets) = c.refresh().await?;
            let w = c.wire();
            out.emit(
                json!({ "fetched": fetched, "targets": targets.len(), "wire_bytes": w.wire_bytes(), "requests": w.requests }),
                || format!("metadata verified: {} targets ({} files fetched)", targets.len(), fetched.len()),
            );
        }
        Command::Models => {
            let cat = Catalog::from_targets(client::stored_targets(&dir).await?);
            let models = cat.models();
            out.emit(json!({ "models": models }), || models.join("\n"));
        }
        Command::Releases { model } => {
            let cat = Catalog::from_targets(client::stored_targets(&dir).await?);
            let rs = cat.releases_for(&model);
            if rs.is_empty() {
                return Err(Error::Usage(format!("no signed release applies to model {model:?}")));
            }
            out.emit(json!({ "model": model, "releases": rs }), || {
                rs.iter().map(|r| format!("{}  {}  {}", r.id, r.date, r.name)).collect::<Vec<_>>().join("\n")
            });
        }
        Command::Show { release } => {
            let cat = Catalog::from_targets(client::stored_targets(&dir).await?);
            let r = cat.releases.get(&release).ok_or_else(|| Error::Usage(format!("no signed release {release:?}")))?;
            let mut comps: Vec<_> = r.entries.iter().map(|&i| &cat.entries[i]).collect();
            comps.sort_by(|a, b| a.custom.component.name.cmp(&b.custom.component.name));
            let list: Vec<_> = comps
                .iter()
                .map(|e| {
                    json!({
                        "component": e.custom.component.name, "kind": e.custom.component.kind,
                        "version": e.custom.component.version, "models": e.custom.component.models,
                        "target": e.info.path.to_string(), "length": e.info.file.length,
                        "sha256": e.info.file.sha256().map(|h| h.to_string()),
                        "blake3": e.custom.blake3, "chunk_index": e.custom.chunk_index,
                    })
                })
                .collect();
            out.emit(json!({ "release": r, "components": list }), || {
                let mut s = format!("{}  {}  {}\n", r.id, r.date, r.name);
                for e in &comps {
                    s.push_str(&format!(
                        "  {}  {}  {} bytes  {}\n",
                        e.custom.component.name, e.custom.component.version, e.info.file.length, e.info.path
                    ));
                }
                s.trim_end().to_owned()
            });
        }
        Command::Plan { model, inventory, installed, release } => {
            let cat = Catalog::from_targets(client::stored_targets(&dir).await?);
            let inv = match (inventory, installed) {
                (Some(f), _) => client::read_inventory(&f)?,
                (None, Some(d)) => client::inventory_of_dir(&d, &cat)?,
                (None, None) => return Err(Error::Usage("give --inventory FILE or --installed DIR".into())),
            };
            let plan = cat.plan(&model, &inv, release.as_deref())?;
            out.emit(serde_json::to_value(&plan).expect("plan serializes"), || plan_text(&plan));
        }
        Command::Fetch { targets, out: out_dir, seeds, no_deltas } => {
            let c = online_with(&dir, !no_deltas)?;
            c.authorize().await?;
            let (_, all) = c.refresh().await?;
            let picked = client::pick_targets(&all, &targets)?;
            let p = progress(out);
            let r = c.fetch(&all, &picked, &out_dir, &seeds, p.as_ref()).await?;
            report(out, &r);
        }
        Command::Update { model, out: out_dir, inventory, release, seeds, no_deltas } => {
            let c = online_with(&dir, !no_deltas)?;
            c.authorize().await?;
            let (_, all) = c.refresh().await?;
            let cat = Catalog::from_targets(all.clone());
            let inv: BTreeMap<_, _> = match inventory {
                Some(f) => client::read_inventory(&f)?,
                None if out_dir.is_dir() => client::inventory_of_dir(&out_dir, &cat)?,
                None => BTreeMap::new(),
            };
            let plan = cat.plan(&model, &inv, release.as_deref())?;
            if !out.json && !out.quiet {
                println!("{}", plan_text(&plan));
            }
            let picked = client::plan_targets(&plan, &cat);
            let p = progress(out);
            let r = c.fetch(&all, &picked, &out_dir, &seeds, p.as_ref()).await?;
            report(out, &r);
        }
    }
    Ok(())
}

fn plan_text(plan: &fwget::catalog::Plan) -> String {
    let mut s = format!("{} for {} ({}, {})\n", plan.release, plan.model, plan.release_name, plan.release_date);
    for i in &plan.items {
        let from = i.from.as_ref().map_or("-".to_owned(), |v| v.as_str().to_owned());
        s.push_str(&format!(
            "  {:<15} {}  {} -> {}  {} bytes\n",
            format!("{:?}", i.action),
            i.component,
            from,
            i.to.as_str(),
            i.length
        ));
    }
    s.push_str(&format!("download: {} files, {} bytes", plan.totals.download_files, plan.totals.download_bytes));
    s
}
