//! Issuance policy against records in a real database: who gets which token, for how long,
//! and which refusals are given.

use fwrepo_entitle::{
    AgreementId, Error, Issuer, IssuerConfig, ModelSet, PartnerId, Refusal, Reject, Scope, Serial, Status,
    TokenRequest, UnixTime,
};

use crate::support::*;

fn refusal(r: fwrepo_entitle::Result<fwrepo_entitle::IssuedToken>) -> Refusal {
    match r {
        Err(Error::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn serial(s: &str) -> TokenRequest {
    TokenRequest::Serial(Serial::new(s).unwrap())
}

fn agreement(s: &str) -> TokenRequest {
    TokenRequest::Agreement(AgreementId::new(s).unwrap())
}

fn credential(c: &str, scope: Scope) -> TokenRequest {
    TokenRequest::PartnerCredential { credential: c.to_owned(), scope }
}

#[test]
fn serial_in_warranty_gets_a_download_token_for_its_model() {
    let t = loaded_records();
    let issued = issuer().issue(&t.records, &serial("S1"), NOW).unwrap();
    assert_eq!(issued.claims.scope, Scope::Download);
    assert_eq!(issued.claims.models, models("DL380 Gen9"));
    assert_eq!(issued.claims.exp, NOW.plus(24 * 3600));
    verifier(t.records.revocations().unwrap()).verify(&issued.token, NOW, Scope::Download, &["DL380 Gen9"]).unwrap();
}

#[test]
fn warranty_ended() {
    let t = loaded_records();
    // S2's warranty ended 2025-05-31, the day before NOW.
    assert_eq!(refusal(issuer().issue(&t.records, &serial("S2"), NOW)), Refusal::UnknownOrExpiredSerial);
    // Unknown serials get the very same answer, so guessing reveals nothing.
    assert_eq!(refusal(issuer().issue(&t.records, &serial("NOPE"), NOW)), Refusal::UnknownOrExpiredSerial);
    // On its last day it was still covered, and the token stopped at the end of that day.
    let last_day = UnixTime(NOW.0 - 3600);
    let issued = issuer().issue(&t.records, &serial("S2"), last_day).unwrap();
    assert_eq!(issued.claims.exp, NOW);
}

#[test]
fn agreement_covers_its_models_and_its_serials_models_until_its_end() {
    let t = loaded_records();
    let issued = issuer().issue(&t.records, &agreement("SA-1"), UnixTime(NOW.0 - 86_400)).unwrap();
    assert_eq!(issued.claims.models, models("BL460c Gen9;DL360 Gen9"));
    // Issued on 2025-05-31: the full 24 h fit before SA-1 ends (end of 2025-06-01).
    assert_eq!(issued.claims.exp, NOW);
    let late = issuer().issue(&t.records, &agreement("SA-1"), NOW.plus(20 * 3600)).unwrap();
    assert_eq!(late.claims.exp, NOW.plus(24 * 3600), "never past the agreement's last day");
}

#[test]
fn ended_suspended_and_unknown_agreements_are_refused_alike() {
    let t = loaded_records();
    for id in ["SA-2", "SA-3", "SA-404"] {
        assert_eq!(
            refusal(issuer().issue(&t.records, &agreement(id), NOW)),
            Refusal::UnknownOrInactiveAgreement,
            "{id}"
        );
    }
}

#[test]
fn agreement_covering_no_known_model_is_refused_like_an_unknown_one() {
    let t = loaded_records();
    // Active and current, but its only serial has no record: it resolves to no model.
    let csv = "agreement,serials,models,start,end,status\nSA-9,NO-SUCH-SERIAL,,2025-01-01,2027-01-01,active\n";
    t.records.import("a.csv", csv.as_bytes(), NOW).unwrap();
    let covers_nothing = issuer().issue(&t.records, &agreement("SA-9"), NOW).unwrap_err();
    let unknown = issuer().issue(&t.records, &agreement("SA-404"), NOW).unwrap_err();
    assert_eq!(covers_nothing.to_string(), unknown.to_string());
    assert_eq!(refusal(Err(covers_nothing)), Refusal::UnknownOrInactiveAgreement);
}

#[test]
fn partner_credential_is_hashed_and_looked_up() {
    let t = loaded_records();
    let issued = issuer().issue(&t.records, &credential("acme-secret", Scope::Mirror), NOW).unwrap();
    assert_eq!(issued.claims.sub.to_string(), "partner:acme");
    assert_eq!(issued.claims.models, ModelSet::All);
    assert_eq!(issued.claims.scope, Scope::Mirror);
    let bolt = issuer().issue(&t.records, &credential("bolt-secret", Scope::Download), NOW).unwrap();
    assert_eq!(bolt.claims.models, models("DL360 Gen9;DL380 Gen9"));
    assert_eq!(
        refusal(issuer().issue(&t.records, &credential("wrong", Scope::Download), NOW)),
        Refusal::UnknownOrInactivePartner
    );
}

#[test]
fn mirror_scope_needs_may_mirror() {
    let t = loaded_records();
    assert_eq!(
        refusal(issuer().issue(&t.records, &credential("bolt-secret", Scope::Mirror), NOW)),
        Refusal::MirrorNotPermitted
    );
}

#[test]
fn revoked_partner_gets_nothing() {
    let t = loaded_records();
    let req = TokenRequest::Partner { id: PartnerId::new("gone").unwrap(), scope: Scope::Download };
    assert_eq!(refusal(issuer().issue(&t.records, &req, NOW)), Refusal::UnknownOrInactivePartner);
}

#[test]
fn partner_suspended_after_issuance() {
    let t = loaded_records();
    let issued = issuer().issue(&t.records, &credential("acme-secret", Scope::Mirror), NOW).unwrap();
    verifier(t.records.revocations().unwrap()).authenticate(&issued.token, NOW).unwrap();

    let acme = PartnerId::new("acme").unwrap();
    t.records.set_partner_status(&acme, Status::Suspended, NOW).unwrap();
    // The published list is what mirrors load: go through its bytes.
    let published = fwrepo_entitle::Revocations::from_json(&t.records.revocations_json().unwrap()).unwrap();
    assert_eq!(verifier(published).authenticate(&issued.token, NOW), Err(Reject::RevokedSubject));
    assert_eq!(
        refusal(issuer().issue(&t.records, &credential("acme-secret", Scope::Mirror), NOW)),
        Refusal::UnknownOrInactivePartner
    );

    t.records.set_partner_status(&acme, Status::Active, NOW).unwrap();
    verifier(t.records.revocations().unwrap()).authenticate(&issued.token, NOW).unwrap();
}

#[test]
fn revoked_serial_subject_blocks_issuance_too() {
    let t = loaded_records();
    t.records.revoke_subject(&subject("serial:S1"), NOW).unwrap();
    assert_eq!(refusal(issuer().issue(&t.records, &serial("S1"), NOW)), Refusal::UnknownOrExpiredSerial);
    assert_eq!(t.records.lift_subject(&subject("serial:S1")).unwrap(), fwrepo_entitle::Lifted::Lifted);
    issuer().issue(&t.records, &serial("S1"), NOW).unwrap();
}

#[test]
fn lifetime_is_configurable() {
    let t = loaded_records();
    let mut config = IssuerConfig::new(ISS, AUD);
    config.max_lifetime_s = 600;
    let short = Issuer::new(config, keyring()).unwrap();
    assert_eq!(short.issue(&t.records, &serial("S1"), NOW).unwrap().claims.exp, NOW.plus(600));
    let mut config = IssuerConfig::new(ISS, AUD);
    config.max_lifetime_s = 0;
    assert!(Issuer::new(config, keyring()).is_err());
}

#[test]
fn ten_year_lifetime_is_refused_at_issue() {
    for secs in [24 * 3600 + 1, 315_360_000, i64::MAX] {
        let mut config = IssuerConfig::new(ISS, AUD);
        config.max_lifetime_s = secs;
        assert!(Issuer::new(config, keyring()).is_err(), "{secs}");
    }
    let mut config = IssuerConfig::new(ISS, AUD);
    config.max_lifetime_s = fwrepo_entitle::MAX_TOKEN_LIFETIME_S;
    let t = loaded_records();
    let issued = Issuer::new(config, keyring()).unwrap().issue(&t.records, &serial("S1"), NOW).unwrap();
    assert_eq!(issued.claims.exp, NOW.plus(24 * 3600));
}

#[test]
fn token_ids_are_unique() {
    let a = download_token();
    let b = download_token();
    assert_ne!(a.claims.jti, b.claims.jti);
    assert_ne!(a.token, b.token);
}

#[test]
fn revocations_round_trip_through_the_published_document() {
    let t = loaded_records();
    let issued = issuer().issue(&t.records, &serial("S1"), NOW).unwrap();
    t.records.revoke_token(&issued.claims.jti, NOW).unwrap();
    let bytes = t.records.revocations_json().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["tokens"][0]["jti"], issued.claims.jti.as_str());
    // SA-3 is suspended and `gone` revoked in the fixtures: their subjects follow the status.
    let subs: Vec<&str> = doc["subjects"].as_array().unwrap().iter().map(|s| s["sub"].as_str().unwrap()).collect();
    assert_eq!(subs, ["agreement:SA-3", "partner:gone"]);
    let back = fwrepo_entitle::Revocations::from_json(&bytes).unwrap();
    assert_eq!(back.to_json_bytes(), bytes);
    assert_eq!(verifier(back).authenticate(&issued.token, NOW), Err(Reject::RevokedToken));
}

#[test]
fn request_debug_output_hides_the_credential() {
    let shown = format!("{:?}", credential("acme-secret", Scope::Mirror));
    assert!(!shown.contains("acme-secret"), "{shown}");
    assert!(shown.contains("Mirror"), "{shown}");
}
