//! `fwrepo`: the operator's command line. Parses arguments, calls the libraries, and reports
//! each failure as one line on stderr with a non-zero exit.
//!
//! Broken pipe, for every command: a reader that goes away (`fwrepo stats | head -1`,
//! `fwrepo cat … | head`) ends the command quietly, never with a panic. Every command but
//! `serve` gets the default action of SIGPIPE back (the Rust runtime ignores it, which turns
//! each later `println!` into a panic), so it ends at once and silently like `cat` does; a write
//! error of kind `BrokenPipe` that reaches `main` all the same exits 0. `serve` keeps SIGPIPE
//! ignored, since a client hanging up must never kill the server, and does not need its stdout.

mod entitle_cmd;
mod mirror_cmd;
mod repo_cmd;
mod serve_cmd;
mod store_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fwrepo", version, about = "Signed firmware repository: store, publish and serve firmware")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new data dir; with --keys, also signed version-1 metadata.
    Init(repo_cmd::InitArgs),
    /// Store files as blobs (chunked, deduplicated) and print their ids.
    Ingest(store_cmd::IngestArgs),
    /// Write a blob (or a byte range of it) to stdout.
    Cat(store_cmd::CatArgs),
    /// Re-hash every chunk and blob; exit non-zero if anything is corrupt.
    Fsck(store_cmd::DataArgs),
    /// Remove chunks no kept blob uses and compact packs.
    Gc(store_cmd::GcArgs),
    /// Show what the store holds.
    Stats(store_cmd::DataArgs),
    /// Entitlement records: serials, service agreements, partners.
    #[command(subcommand)]
    Entitlements(entitle_cmd::EntitlementsCommand),
    /// Access tokens: issue and revoke.
    #[command(subcommand)]
    Token(entitle_cmd::TokenCommand),
    /// Serve metadata, firmware (range requests, token-gated), the catalog and tokens over HTTP.
    Serve(serve_cmd::ServeArgs),
    /// Issuer keys and revocations as signed targets for mirrors.
    #[command(subcommand)]
    Auth(entitle_cmd::AuthCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Publish an SPP release from its manifest (release.toml).
    Publish(repo_cmd::PublishArgs),
    /// Write a static TUF repository (metadata/ and targets/) for any HTTP server or CDN.
    Export(repo_cmd::ExportArgs),
    /// Re-sign the timestamp (and snapshot/targets near expiry); run from a timer.
    Timestamp(repo_cmd::TimestampArgs),
    /// Root key operations (need the offline root keys).
    #[command(subcommand)]
    Root(repo_cmd::RootCommand),
    /// A partner mirror: init a mirror data dir, sync it from its upstream, show its status.
    #[command(subcommand)]
    Mirror(mirror_cmd::MirrorCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write new TUF ed25519 signing keys (mode 0600) into a key directory.
    Generate(repo_cmd::KeysGenerateArgs),
    /// Create the token issuer keyring (DIR/issuer.jwks), or add a new signing key to it; old
    /// keys keep verifying until removed. Prints the new key id.
    RotateIssuer {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// A signed repository to publish the new auth/issuers.json to, with the online keys
        /// in the same keys dir.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

/// How a command ended when it did not fail outright.
pub enum Outcome {
    Ok,
    /// The command ran and found problems it already reported (fsck).
    Problems,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: restores the default disposition of one signal before any thread exists;
        // no handler runs in this process.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FWREPO_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Init(a) => repo_cmd::init(a),
        Command::Ingest(a) => store_cmd::ingest(a),
        Command::Cat(a) => store_cmd::cat(a),
        Command::Fsck(a) => store_cmd::fsck(a),
        Command::Gc(a) => store_cmd::gc(a),
        Command::Stats(a) => store_cmd::stats(a),
        Command::Keys(KeysCommand::Generate(a)) => repo_cmd::keys_generate(a),
        Command::Publish(a) => repo_cmd::publish(a),
        Command::Export(a) => repo_cmd::export(a),
        Command::Timestamp(a) => repo_cmd::timestamp(a),
        Command::Root(c) => repo_cmd::root(c),
        Command::Entitlements(c) => entitle_cmd::entitlements(c),
        Command::Token(c) => entitle_cmd::token(c),
        Command::Auth(c) => entitle_cmd::auth(c),
        Command::Serve(a) => serve_cmd::serve(a),
        Command::Mirror(c) => mirror_cmd::mirror(c),
        Command::Keys(KeysCommand::RotateIssuer { keys, data }) => entitle_cmd::rotate_issuer(&keys, data.as_deref()),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "fwrepo: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A reader that went away (`fwrepo cat … | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The `--data DIR` argument every command takes.
#[derive(clap::Args)]
pub struct Data {
    /// The data dir.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}
