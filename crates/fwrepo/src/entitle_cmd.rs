//! Entitlement and token commands: `fwrepo entitlements …`, `fwrepo token …`,
//! `fwrepo keys rotate-issuer`.
//!
//! A subject revocation made with `token revoke --subject` stands until `token unrevoke
//! --subject`; imports and status changes never lift it (see `fwrepo_entitle::store`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fwrepo_entitle::{
    AgreementId, Entitlements, Issuer, IssuerConfig, IssuerKeyring, Jti, Lifted, MAX_TOKEN_LIFETIME_S, PartnerId,
    RecordKind, Scope, Serial, Status, Subject, TokenRequest, UnixTime,
};
use fwrepo_repo::Repo;
use fwrepo_repo::keys::{Keyring, Role, check_outside, check_private, write_private};

use crate::{Data, Outcome};

/// The issuer keyring's file name inside the keys directory.
pub const ISSUER_KEYS: &str = "issuer.jwks";
/// Default `iss` and `aud` of tokens; the server verifies the same values unless configured.
pub const DEFAULT_ISSUER: &str = "fwrepo";
pub const DEFAULT_AUDIENCE: &str = "fwrepo";

#[derive(clap::Subcommand)]
pub enum EntitlementsCommand {
    /// Import serials, agreements or partners from CSV or JSON files (each file all or nothing).
    Import {
        #[command(flatten)]
        data: Data,
        /// Online TUF keys: publish the resulting revocations at once.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List records as JSON (all kinds) or CSV (one kind).
    List {
        #[command(flatten)]
        data: Data,
        /// Print CSV of this kind (serials, agreements, partners) instead of JSON.
        #[arg(long, value_name = "KIND")]
        csv: Option<String>,
    },
    /// Show one record as JSON.
    Show {
        #[command(flatten)]
        data: Data,
        #[command(flatten)]
        who: Who,
    },
    /// Revoke (or suspend) an agreement or partner: its tokens stop working at once.
    Revoke {
        #[command(flatten)]
        data: Data,
        #[command(flatten)]
        who: AgreementOrPartner,
        /// Suspend instead of revoke (an import that changes the status to active lifts
        /// either; a `token revoke --subject` stays).
        #[arg(long)]
        suspend: bool,
        /// Online TUF keys: publish the revocation at once.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    #[arg(long)]
    serial: Option<String>,
    #[arg(long)]
    agreement: Option<String>,
    #[arg(long)]
    partner: Option<String>,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct AgreementOrPartner {
    #[arg(long)]
    agreement: Option<String>,
    #[arg(long)]
    partner: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it alone on stdout.
    Issue {
        #[command(flatten)]
        data: Data,
        /// The directory holding issuer.jwks.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        #[command(flatten)]
        who: Who,
        /// `download` or `mirror` (partners only).
        #[arg(long, default_value = "download")]
        scope: String,
        /// The `iss` claim.
        #[arg(long, default_value = DEFAULT_ISSUER)]
        issuer: String,
        /// The `aud` claim.
        #[arg(long, default_value = DEFAULT_AUDIENCE)]
        audience: String,
        /// Token lifetime in seconds, at most 86400 (24 h); never past the warranty or
        /// agreement end.
        #[arg(long, default_value_t = MAX_TOKEN_LIFETIME_S)]
        lifetime: i64,
    },
    /// Revoke one token (by its jti) or every token of a subject (`serial:…`, `agreement:…`,
    /// `partner:…`). A subject revocation stands until `token unrevoke`: no import lifts it.
    Revoke {
        #[command(flatten)]
        data: Data,
        #[command(flatten)]
        what: JtiOrSubject,
        /// Online TUF keys: publish the revocation at once.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// Lift a revocation made with `token revoke`. A subject whose partner or agreement record
    /// is suspended or revoked stays revoked until an import sets it active.
    Unrevoke {
        #[command(flatten)]
        data: Data,
        #[command(flatten)]
        what: JtiOrSubject,
        /// Online TUF keys: publish the changed revocation list at once.
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct JtiOrSubject {
    /// The token's id (`--jti=ID` or `--jti ID`; an id may start with `-`).
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    jti: Option<String>,
    #[arg(long)]
    subject: Option<String>,
}

/// Opens the data dir once for both the repository (to publish auth documents) and the
/// entitlement records.
fn open(data: &Path, write: bool) -> Result<(Repo, Entitlements)> {
    let repo = Repo::open_with_families(data, !write, fwrepo_entitle::COLUMN_FAMILIES)?;
    let records = Entitlements::new(repo.store().db().clone());
    Ok((repo, records))
}

/// Paths of the signed targets through which mirrors learn issuer keys and revocations.
pub const ISSUERS_TARGET: &str = "auth/issuers.json";
pub const REVOCATIONS_TARGET: &str = "auth/revocations.json";

/// Publishes `auth/revocations.json` (and `auth/issuers.json` when the keys dir holds the
/// issuer keyring) as signed targets with the online keys in `keys`.
fn publish_auth(repo: &Repo, records: &Entitlements, keys: &Path) -> Result<()> {
    check_outside(keys, repo.store().dir())?;
    let ring = Keyring::load(keys, &Role::ONLINE)?;
    let revocations = records.revocations_json()?;
    let issuers = match keys.join(ISSUER_KEYS).exists() {
        true => Some(load_keyring(keys)?.public_jwks_bytes()),
        false => None,
    };
    let mut files: Vec<(&str, &[u8])> = vec![(REVOCATIONS_TARGET, &revocations)];
    if let Some(i) = &issuers {
        files.push((ISSUERS_TARGET, i));
    }
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    repo.publish_files(&files, &ring, keys, now)?;
    for (path, _) in &files {
        eprintln!("published {path}");
    }
    Ok(())
}

/// After a change mirrors must learn of: publish it when the data dir is a signed repository
/// and keys are at hand, or say how to.
fn after_change(repo: &Repo, records: &Entitlements, keys: Option<&Path>) -> Result<()> {
    if !repo.has_metadata()? {
        return Ok(());
    }
    match keys {
        Some(k) => publish_auth(repo, records, k),
        None => {
            eprintln!(
                "note: recorded here; mirrors learn it once published: `fwrepo auth publish --data {} --keys DIR`",
                repo.store().dir().display()
            );
            Ok(())
        }
    }
}

#[derive(clap::Subcommand)]
pub enum AuthCommand {
    /// Publish auth/issuers.json (public issuer keys) and auth/revocations.json as signed
    /// targets, so mirrors verify tokens and learn revocations with TUF guarantees.
    Publish {
        #[command(flatten)]
        data: Data,
        /// Directory with the online TUF keys (targets, snapshot, timestamp) and issuer.jwks.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
    },
}

pub fn auth(cmd: AuthCommand) -> Result<Outcome> {
    let AuthCommand::Publish { data, keys } = cmd;
    let (repo, records) = open(&data.data, true)?;
    if !repo.has_metadata()? {
        bail!(
            "{} has no signed metadata; create it with `fwrepo init --data {} --keys DIR`",
            data.data.display(),
            data.data.display()
        );
    }
    publish_auth(&repo, &records, &keys)?;
    Ok(Outcome::Ok)
}

pub fn entitlements(cmd: EntitlementsCommand) -> Result<Outcome> {
    match cmd {
        EntitlementsCommand::Import { data, files, keys } => {
            // Read every file first, so an unreadable one changes nothing.
            let mut inputs = Vec::new();
            for f in &files {
                inputs.push((f.display().to_string(), std::fs::read(f).with_context(|| f.display().to_string())?));
            }
            let (repo, records) = open(&data.data, true)?;
            for (name, bytes) in inputs {
                let s = records.import(&name, &bytes, UnixTime::now())?;
                println!("{name}: {} created, {} updated, {} unchanged", s.created, s.updated, s.unchanged);
            }
            after_change(&repo, &records, keys.as_deref())?;
        }
        EntitlementsCommand::List { data, csv } => {
            let (_repo, records) = open(&data.data, false)?;
            let bytes = match csv {
                None => records.export_json()?,
                Some(kind) => records.export_csv(parse_kind(&kind)?)?,
            };
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            if !bytes.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
        }
        EntitlementsCommand::Show { data, who } => {
            let (_repo, records) = open(&data.data, false)?;
            let json = if let Some(s) = &who.serial {
                let id: Serial = s.parse()?;
                serde_json::to_string_pretty(&records.serial(&id)?.with_context(|| format!("no serial {s:?}"))?)?
            } else if let Some(a) = &who.agreement {
                let id: AgreementId = a.parse()?;
                serde_json::to_string_pretty(&records.agreement(&id)?.with_context(|| format!("no agreement {a:?}"))?)?
            } else {
                let p = who.partner.as_deref().unwrap_or_default();
                let id: PartnerId = p.parse()?;
                serde_json::to_string_pretty(&records.partner(&id)?.with_context(|| format!("no partner {p:?}"))?)?
            };
            println!("{json}");
        }
        EntitlementsCommand::Revoke { data, who, suspend, keys } => {
            let status = if suspend { Status::Suspended } else { Status::Revoked };
            let (repo, records) = open(&data.data, true)?;
            let now = UnixTime::now();
            if let Some(a) = &who.agreement {
                let id: AgreementId = a.parse()?;
                records.agreement(&id)?.with_context(|| format!("no agreement {a:?}"))?;
                records.set_agreement_status(&id, status, now)?;
                println!("agreement {a}: {status:?}");
            } else {
                let p = who.partner.as_deref().unwrap_or_default();
                let id: PartnerId = p.parse()?;
                records.partner(&id)?.with_context(|| format!("no partner {p:?}"))?;
                records.set_partner_status(&id, status, now)?;
                println!("partner {p}: {status:?}");
            }
            after_change(&repo, &records, keys.as_deref())?;
        }
    }
    Ok(Outcome::Ok)
}

fn parse_kind(kind: &str) -> Result<RecordKind> {
    Ok(match kind {
        "serials" => RecordKind::Serials,
        "agreements" => RecordKind::Agreements,
        "partners" => RecordKind::Partners,
        other => bail!("unknown record kind {other:?}: expected serials, agreements or partners"),
    })
}

fn parse_scope(scope: &str) -> Result<Scope> {
    Ok(match scope {
        "download" => Scope::Download,
        "mirror" => Scope::Mirror,
        other => bail!("unknown scope {other:?}: expected download or mirror"),
    })
}

pub fn token(cmd: TokenCommand) -> Result<Outcome> {
    match cmd {
        TokenCommand::Issue { data, keys, who, scope, issuer, audience, lifetime } => {
            let scope = parse_scope(&scope)?;
            let request = if let Some(s) = &who.serial {
                TokenRequest::Serial(s.parse()?)
            } else if let Some(a) = &who.agreement {
                TokenRequest::Agreement(a.parse()?)
            } else {
                TokenRequest::Partner { id: who.partner.as_deref().unwrap_or_default().parse()?, scope }
            };
            if scope == Scope::Mirror && !matches!(request, TokenRequest::Partner { .. }) {
                bail!("mirror scope is for partners only");
            }
            if !(1..=MAX_TOKEN_LIFETIME_S).contains(&lifetime) {
                bail!("--lifetime must be 1 to {MAX_TOKEN_LIFETIME_S} seconds (24 h), not {lifetime}");
            }
            let keyring = load_keyring(&keys)?;
            let (_repo, records) = open(&data.data, false)?;
            let config = IssuerConfig { max_lifetime_s: lifetime, ..IssuerConfig::new(issuer, audience) };
            let issued = Issuer::new(config, keyring)?.issue(&records, &request, UnixTime::now())?;
            println!("{}", issued.token);
        }
        TokenCommand::Revoke { data, what, keys } => {
            let (repo, records) = open(&data.data, true)?;
            let now = UnixTime::now();
            if let Some(j) = &what.jti {
                records.revoke_token(&Jti::new(j)?, now)?;
                println!("revoked token {j}");
            } else {
                let s = what.subject.as_deref().unwrap_or_default();
                let subject: Subject = s.parse()?;
                records.revoke_subject(&subject, now)?;
                println!("revoked every token of {s}");
            }
            after_change(&repo, &records, keys.as_deref())?;
        }
        TokenCommand::Unrevoke { data, what, keys } => {
            // Check the argument before opening (and locking) the data dir.
            enum Target {
                Token(Jti),
                Subject(Subject),
            }
            let target = match (&what.jti, &what.subject) {
                (Some(j), _) => Target::Token(Jti::new(j)?),
                (None, s) => Target::Subject(s.as_deref().unwrap_or_default().parse()?),
            };
            let (repo, records) = open(&data.data, true)?;
            match target {
                Target::Token(jti) => {
                    if !records.unrevoke_token(&jti)? {
                        bail!("token {jti} is not revoked");
                    }
                    println!("lifted the revocation of token {jti}");
                }
                Target::Subject(subject) => match records.lift_subject(&subject)? {
                    Lifted::Lifted => println!("lifted the revocation of every token of {subject}"),
                    Lifted::StillRevokedByStatus => {
                        println!("lifted the manual revocation of {subject}");
                        eprintln!(
                            "note: {subject} stays revoked: its record is not active (an import with status active restores it)"
                        );
                    }
                    Lifted::NotManuallyRevoked if records.is_subject_revoked(&subject)? => bail!(
                        "{subject} is revoked by its record's status, not by `token revoke`; an import with status active restores it"
                    ),
                    Lifted::NotManuallyRevoked => bail!("{subject} is not revoked"),
                },
            }
            after_change(&repo, &records, keys.as_deref())?;
        }
    }
    Ok(Outcome::Ok)
}

/// Loads `DIR/issuer.jwks`, refusing a file group or others may access.
pub fn load_keyring(keys: &Path) -> Result<IssuerKeyring> {
    let path = keys.join(ISSUER_KEYS);
    if !path.exists() {
        bail!(
            "{}: no issuer keys; create them with `fwrepo keys rotate-issuer --keys {}`",
            path.display(),
            keys.display()
        );
    }
    check_private(&path)?;
    let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
    IssuerKeyring::from_bytes(&bytes).with_context(|| path.display().to_string())
}

/// Creates the issuer keyring, or adds a new signing key to it (old keys keep verifying).
/// Prints the new key id.
pub fn rotate_issuer(keys: &Path, data: Option<&Path>) -> Result<Outcome> {
    let path = keys.join(ISSUER_KEYS);
    let (keyring, kid) = if path.exists() {
        let mut k = load_keyring(keys)?;
        let kid = k.rotate()?;
        (k, kid)
    } else {
        std::fs::create_dir_all(keys).with_context(|| keys.display().to_string())?;
        let k = IssuerKeyring::generate()?;
        let kid = k.signing_kid().clone();
        (k, kid)
    };
    if let Some(data) = data {
        check_outside(keys, data)?;
    }
    write_private(&path, &keyring.to_bytes(), true)?;
    println!("{kid}");
    if let Some(data) = data {
        let (repo, records) = open(data, true)?;
        after_change(&repo, &records, Some(keys))?;
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        token: TokenCommand,
    }

    fn jti_of(args: &[&str]) -> Option<String> {
        let cli = Cli::try_parse_from(args).ok()?;
        match cli.token {
            TokenCommand::Revoke { what, .. } | TokenCommand::Unrevoke { what, .. } => what.jti,
            TokenCommand::Issue { .. } => None,
        }
    }

    #[test]
    fn jti_starting_with_a_dash_parses_in_both_spellings() {
        for cmd in ["revoke", "unrevoke"] {
            assert_eq!(jti_of(&["t", cmd, "--data", "d", "--jti=-AbC_1"]).as_deref(), Some("-AbC_1"));
            assert_eq!(jti_of(&["t", cmd, "--data", "d", "--jti", "-AbC_1"]).as_deref(), Some("-AbC_1"));
            assert_eq!(jti_of(&["t", cmd, "--jti=AbC", "--data", "d"]).as_deref(), Some("AbC"));
        }
    }
}
