//! Shared fixtures: a fixed clock, deterministic keys, token forging, a scratch database.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use fwrepo_entitle::{
    COLUMN_FAMILIES, Entitlements, IssuedToken, Issuer, IssuerConfig, IssuerKeyring, ModelSet, Revocations, Scope,
    Subject, UnixTime, Verifier,
};

/// 2025-06-01T00:00:00Z.
pub const NOW: UnixTime = UnixTime(1_748_736_000);
pub const ISS: &str = "https://origin.example";
pub const AUD: &str = "fwrepo";
pub const SEED: [u8; 32] = [7; 32];

pub fn keyring() -> IssuerKeyring {
    IssuerKeyring::from_seeds(&[SEED]).unwrap()
}

pub fn issuer() -> Issuer {
    Issuer::new(IssuerConfig::new(ISS, AUD), keyring()).unwrap()
}

pub fn verifier(revocations: Revocations) -> Verifier {
    Verifier::new(keyring().verifying_keys(), revocations, AUD).with_issuer(ISS)
}

pub fn models(list: &str) -> ModelSet {
    ModelSet::parse_list(list).unwrap()
}

pub fn subject(s: &str) -> Subject {
    s.parse().unwrap()
}

/// A genuine download token for `serial:S1`, model `DL380 Gen9`, issued at [`NOW`].
pub fn download_token() -> IssuedToken {
    issuer().mint(subject("serial:S1"), Scope::Download, models("DL380 Gen9"), None, NOW).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header and payload JSON, signed with EdDSA by `key`.
pub fn forge(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

/// Claims JSON like the issuer's, for forging.
pub fn claims_json(exp: i64, nbf: i64, aud: &str) -> String {
    format!(
        r#"{{"iss":"{ISS}","sub":"serial:S1","aud":"{aud}","iat":{nbf},"nbf":{nbf},"exp":{exp},"jti":"j1","scope":"download","models":["DL380 Gen9"]}}"#
    )
}

pub fn header_json(kid: &str) -> String {
    format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#)
}

pub fn kid() -> String {
    keyring().signing_kid().to_string()
}

/// A fresh read-write database with the crate's column families, and its records.
pub struct TempRecords {
    pub records: Entitlements,
    _dir: tempfile::TempDir,
}

pub fn temp_records() -> TempRecords {
    let dir = tempfile::tempdir().unwrap();
    let db = fwrepo_db::Db::open(dir.path(), COLUMN_FAMILIES, fwrepo_db::Mode::ReadWrite).unwrap();
    TempRecords { records: Entitlements::new(Arc::new(db)), _dir: dir }
}

pub const SERIALS_CSV: &str = "\
serial,model,warranty_end
S1,DL380 Gen9,2026-12-31
S2,DL360 Gen9,2025-05-31
S3,ML350 Gen10,2030-01-01
";

pub const AGREEMENTS_CSV: &str = "\
agreement,serials,models,start,end,status
SA-1,S2,BL460c Gen9,2025-01-01,2025-06-01,active
SA-2,,DL380 Gen9,2024-01-01,2024-12-31,active
SA-3,S3,,2025-01-01,2027-01-01,suspended
";

/// acme's credential is `acme-secret`; its SHA-256 is in the file.
pub fn partners_csv() -> String {
    let acme = fwrepo_entitle::records::CredentialHash::of("acme-secret").to_hex();
    let bolt = fwrepo_entitle::records::CredentialHash::of("bolt-secret").to_hex();
    format!(
        "partner,name,level,status,models,may_mirror,credential_sha256\n\
         acme,\"Acme Servers, Inc.\",expert,active,*,true,{acme}\n\
         bolt,Bolt IT,authorized,active,DL380 Gen9;DL360 Gen9,false,{bolt}\n\
         gone,Gone Ltd,authorized,revoked,DL380 Gen9,true,\n"
    )
}

/// A database holding [`SERIALS_CSV`], [`AGREEMENTS_CSV`] and [`partners_csv`].
pub fn loaded_records() -> TempRecords {
    let t = temp_records();
    t.records.import("serials.csv", SERIALS_CSV.as_bytes(), NOW).unwrap();
    t.records.import("agreements.csv", AGREEMENTS_CSV.as_bytes(), NOW).unwrap();
    t.records.import("partners.csv", partners_csv().as_bytes(), NOW).unwrap();
    t
}
