//! CSV and JSON import/export: all-or-nothing files, precise error positions, updates.

use fwrepo_entitle::{
    AgreementId, COLUMN_FAMILIES, Causes, Entitlements, Error, ImportSummary, Issuer, Jti, Lifted, PartnerId,
    RecordKind, Refusal, Reject, Scope, Serial, Status, TokenRequest,
};

use crate::support::*;

fn import_error(e: Error) -> (String, u64, u64, String) {
    match e {
        Error::Import { file, line, column, field, .. } => (file, line, column, field),
        other => panic!("expected an import error, got {other}"),
    }
}

#[test]
fn bad_row_names_file_line_and_column_and_applies_nothing() {
    let t = temp_records();
    let csv =
        "serial,model,warranty_end\nA1,DL380 Gen9,2026-01-01\nA2,DL360 Gen9,2026-13-01\nA3,DL360 Gen9,2026-01-01\n";
    let err = t.records.import("batch.csv", csv.as_bytes(), NOW).unwrap_err();
    let msg = err.to_string();
    assert_eq!(import_error(err), ("batch.csv".to_owned(), 3, 3, "warranty_end".to_owned()));
    assert!(msg.starts_with("batch.csv:3:3: warranty_end:"), "{msg}");
    assert!(t.records.serial(&Serial::new("A1").unwrap()).unwrap().is_none(), "row 2 was not applied");
    assert!(t.records.records().unwrap().is_empty());
}

#[test]
fn error_positions_for_each_kind_of_bad_field() {
    let cases: &[(&str, u64, u64, &str)] = &[
        ("serial,model,warranty_end\nA:1,DL380,2026-01-01\n", 2, 1, "serial"),
        ("serial,model,warranty_end\nA1,DL380;X,2026-01-01\n", 2, 2, "model"),
        ("serial,model,warranty_end\nA1,DL380\n", 2, 3, "warranty_end"),
        ("serial,model,warranty_end\nA1,DL380,2026-01-01\nA1,DL360,2026-01-01\n", 3, 1, "serial"),
        ("agreement,serials,models,start,end,status\nSA,,,2025-01-01,2026-01-01,active\n", 2, 2, "serials"),
        ("agreement,serials,models,start,end,status\nSA,A1,,2025-01-01,2024-01-01,active\n", 2, 5, "end"),
        ("agreement,serials,models,start,end,status\nSA,A1,,2025-01-01,2026-01-01,paused\n", 2, 6, "status"),
        (
            "partner,name,level,status,models,may_mirror,credential_sha256\np,P,expert,active,*,yes,\n",
            2,
            6,
            "may_mirror",
        ),
        (
            "partner,name,level,status,models,may_mirror,credential_sha256\np,P,expert,active,*,true,abc\n",
            2,
            7,
            "credential_sha256",
        ),
        ("partner,name,level,status,models,may_mirror,credential_sha256\np,,expert,active,*,true,\n", 2, 2, "name"),
        ("serial,model\nA1,DL380\n", 1, 1, "header"),
        ("", 1, 1, "header"),
    ];
    for (csv, line, column, field) in cases {
        let err = fwrepo_entitle::import::parse("f.csv", csv.as_bytes()).unwrap_err();
        assert_eq!(import_error(err), ("f.csv".to_owned(), *line, *column, field.to_string()), "{csv}");
    }
}

#[test]
fn reimport_updates_records() {
    let t = loaded_records();
    let s1 = Serial::new("S1").unwrap();
    assert_eq!(t.records.serial(&s1).unwrap().unwrap().warranty_end.to_string(), "2026-12-31");
    let csv =
        "serial,model,warranty_end\nS1,DL380 Gen9,2028-06-30\nS9,DL20 Gen10,2027-01-01\nS3,ML350 Gen10,2030-01-01\n";
    let summary = t.records.import("update.csv", csv.as_bytes(), NOW).unwrap();
    assert_eq!((summary.created, summary.updated, summary.unchanged), (1, 1, 1));
    assert_eq!(t.records.serial(&s1).unwrap().unwrap().warranty_end.to_string(), "2028-06-30");
    assert_eq!(t.records.records().unwrap().serials.len(), 4);
}

#[test]
fn reimported_partner_credential_replaces_the_old_one() {
    let t = loaded_records();
    assert!(t.records.partner_by_credential("bolt-secret").unwrap().is_some());
    let new = fwrepo_entitle::records::CredentialHash::of("bolt-new").to_hex();
    let csv = format!(
        "partner,name,level,status,models,may_mirror,credential_sha256\nbolt,Bolt IT,expert,active,DL380 Gen9,false,{new}\n"
    );
    t.records.import("p.csv", csv.as_bytes(), NOW).unwrap();
    assert!(t.records.partner_by_credential("bolt-secret").unwrap().is_none());
    let bolt = t.records.partner_by_credential("bolt-new").unwrap().unwrap();
    assert_eq!(bolt.level.as_str(), "expert");
}

#[test]
fn a_credential_belongs_to_one_partner() {
    let t = loaded_records();
    let acme = fwrepo_entitle::records::CredentialHash::of("acme-secret").to_hex();
    let csv = format!(
        "partner,name,level,status,models,may_mirror,credential_sha256\nzed,Zed,authorized,active,*,false,{acme}\n"
    );
    assert!(t.records.import("p.csv", csv.as_bytes(), NOW).is_err());
    assert!(t.records.partner(&PartnerId::new("zed").unwrap()).unwrap().is_none());
}

#[test]
fn csv_export_reimports_to_the_same_records() {
    let t = loaded_records();
    let copy = temp_records();
    for kind in RecordKind::ALL {
        let csv = t.records.export_csv(kind).unwrap();
        assert!(csv.starts_with(kind.csv_header().join(",").as_bytes()));
        copy.records.import(&format!("{}.csv", kind.name()), &csv, NOW).unwrap();
    }
    assert_eq!(copy.records.records().unwrap(), t.records.records().unwrap());
    assert_eq!(copy.records.revocations().unwrap(), t.records.revocations().unwrap());
}

#[test]
fn json_export_reimports_to_the_same_records() {
    let t = loaded_records();
    let json = t.records.export_json().unwrap();
    let copy = temp_records();
    let summary = copy.records.import("all.json", &json, NOW).unwrap();
    assert_eq!(summary.created, 3 + 3 + 3);
    assert_eq!(copy.records.records().unwrap(), t.records.records().unwrap());
}

#[test]
fn json_errors_carry_line_and_column_and_apply_nothing() {
    let t = temp_records();
    let json = r#"{
  "serials": [
    {"serial": "A1", "model": "DL380 Gen9", "warranty_end": "2026-01-01"},
    {"serial": "A2", "model": "DL380 Gen9", "warranty_end": "soon"}
  ]
}"#;
    let err = t.records.import("s.json", json.as_bytes(), NOW).unwrap_err();
    let (file, line, _, field) = import_error(err);
    assert_eq!((file.as_str(), line, field.as_str()), ("s.json", 4, "json"));
    assert!(t.records.records().unwrap().is_empty());
    let dup = r#"{"partners": [
 {"partner": "p", "name": "P", "level": "expert", "status": "active", "models": ["*"], "may_mirror": true},
 {"partner": "p", "name": "P", "level": "expert", "status": "active", "models": ["*"], "may_mirror": true}]}"#;
    let err = t.records.import("p.json", dup.as_bytes(), NOW).unwrap_err();
    assert_eq!(import_error(err).1, 3);
}

#[test]
fn status_change_by_import_follows_into_revocations() {
    let t = loaded_records();
    let sa1 = AgreementId::new("SA-1").unwrap();
    let csv = "agreement,serials,models,start,end,status\nSA-1,S2,BL460c Gen9,2025-01-01,2025-06-01,revoked\n";
    t.records.import("a.csv", csv.as_bytes(), NOW).unwrap();
    assert_eq!(t.records.agreement(&sa1).unwrap().unwrap().status, Status::Revoked);
    assert!(t.records.is_subject_revoked(&subject("agreement:SA-1")).unwrap());
    t.records.set_agreement_status(&sa1, Status::Active, NOW).unwrap();
    assert!(!t.records.is_subject_revoked(&subject("agreement:SA-1")).unwrap());
}

fn credential(c: &str) -> TokenRequest {
    TokenRequest::PartnerCredential { credential: c.to_owned(), scope: Scope::Download }
}

fn refused(issuer: &Issuer, t: &TempRecords, request: &TokenRequest) -> Refusal {
    match issuer.issue(&t.records, request, NOW) {
        Err(Error::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn reimport_does_not_lift_manual_subject_revocation() {
    let t = loaded_records();
    let old = issuer().issue(&t.records, &credential("bolt-secret"), NOW).unwrap();
    let bolt = subject("partner:bolt");
    let sa1 = subject("agreement:SA-1");
    t.records.revoke_subject(&bolt, NOW).unwrap();
    t.records.revoke_subject(&sa1, NOW).unwrap();

    // The routine nightly re-import of the same files: nothing changed, nothing is lifted.
    let s = t.records.import("partners.csv", partners_csv().as_bytes(), NOW.plus(60)).unwrap();
    assert_eq!(s, ImportSummary { created: 0, updated: 0, unchanged: 3 });
    t.records.import("agreements.csv", AGREEMENTS_CSV.as_bytes(), NOW.plus(60)).unwrap();
    assert!(t.records.is_subject_revoked(&bolt).unwrap());
    assert!(t.records.is_subject_revoked(&sa1).unwrap());
    assert_eq!(refused(&issuer(), &t, &credential("bolt-secret")), Refusal::UnknownOrInactivePartner);
    let revs = t.records.revocations().unwrap();
    assert_eq!(verifier(revs).authenticate(&old.token, NOW), Err(Reject::RevokedSubject));
}

#[test]
fn status_change_to_active_does_not_lift_a_manual_revocation() {
    let t = loaded_records();
    let bolt = subject("partner:bolt");
    t.records.revoke_subject(&bolt, NOW).unwrap();
    let suspended = partners_csv().replace("bolt,Bolt IT,authorized,active", "bolt,Bolt IT,authorized,suspended");
    t.records.import("partners.csv", suspended.as_bytes(), NOW).unwrap();
    let rev = t.records.subject_revocation(&bolt).unwrap().unwrap();
    assert_eq!(rev.causes, Causes { manual: true, status: true });
    // A real status change back to active removes the status cause only.
    t.records.import("partners.csv", partners_csv().as_bytes(), NOW.plus(60)).unwrap();
    let rev = t.records.subject_revocation(&bolt).unwrap().unwrap();
    assert_eq!(rev.causes, Causes { manual: true, status: false });
    assert_eq!(rev.since, NOW, "the first revocation time is kept");
    assert_eq!(refused(&issuer(), &t, &credential("bolt-secret")), Refusal::UnknownOrInactivePartner);
    // Only the operator lifts it.
    assert_eq!(t.records.lift_subject(&bolt).unwrap(), Lifted::Lifted);
    assert!(!t.records.is_subject_revoked(&bolt).unwrap());
    issuer().issue(&t.records, &credential("bolt-secret"), NOW).unwrap();
}

#[test]
fn unrevoking_a_subject_leaves_its_status_revocation_standing() {
    let t = loaded_records();
    // `gone` is revoked by its status in the fixtures.
    let gone = subject("partner:gone");
    assert_eq!(t.records.lift_subject(&gone).unwrap(), Lifted::NotManuallyRevoked);
    assert!(t.records.is_subject_revoked(&gone).unwrap());
    t.records.revoke_subject(&gone, NOW).unwrap();
    assert_eq!(t.records.lift_subject(&gone).unwrap(), Lifted::StillRevokedByStatus);
    assert_eq!(t.records.subject_revocation(&gone).unwrap().unwrap().causes, Causes { manual: false, status: true });
    // An unchanged re-import of the revoked record neither lifts nor duplicates anything.
    t.records.import("partners.csv", partners_csv().as_bytes(), NOW).unwrap();
    assert!(t.records.is_subject_revoked(&gone).unwrap());
}

#[test]
fn unrevoked_token_verifies_again() {
    let t = loaded_records();
    let issued = issuer().issue(&t.records, &credential("bolt-secret"), NOW).unwrap();
    t.records.revoke_token(&issued.claims.jti, NOW).unwrap();
    assert_eq!(verifier(t.records.revocations().unwrap()).authenticate(&issued.token, NOW), Err(Reject::RevokedToken));
    assert!(t.records.unrevoke_token(&issued.claims.jti).unwrap());
    assert!(!t.records.unrevoke_token(&issued.claims.jti).unwrap());
    assert!(!t.records.unrevoke_token(&Jti::new("never-revoked").unwrap()).unwrap());
    verifier(t.records.revocations().unwrap()).authenticate(&issued.token, NOW).unwrap();
}

#[test]
fn subject_revocation_of_the_old_format_is_read_as_manual() {
    let t = loaded_records();
    // An entry as written before causes were kept: format 1, the time alone.
    let db = t.records.db();
    let mut batch = fwrepo_db::WriteBatch::default();
    let cf = db.require_cf("entitle.revoked_subjects").unwrap();
    batch.put_cf(cf, "partner:bolt", fwrepo_db::encode(1, &NOW.0.to_be_bytes()));
    db.write(batch, true).unwrap();
    let bolt = subject("partner:bolt");
    let suspended = partners_csv().replace("bolt,Bolt IT,authorized,active", "bolt,Bolt IT,authorized,suspended");
    t.records.import("partners.csv", suspended.as_bytes(), NOW).unwrap();
    t.records.import("partners.csv", partners_csv().as_bytes(), NOW).unwrap();
    assert!(t.records.is_subject_revoked(&bolt).unwrap(), "an import lifted an old revocation");
    assert_eq!(t.records.lift_subject(&bolt).unwrap(), Lifted::Lifted);
}

#[test]
fn corrupt_subject_revocation_is_an_error_not_a_guess() {
    let t = loaded_records();
    let db = t.records.db();
    let cf = db.require_cf("entitle.revoked_subjects").unwrap();
    for bad in [fwrepo_db::encode(2, &[0; 9]), fwrepo_db::encode(2, &[0; 8]), fwrepo_db::encode(9, &[0; 9])] {
        let mut batch = fwrepo_db::WriteBatch::default();
        batch.put_cf(cf, "partner:bolt", bad);
        db.write(batch, true).unwrap();
        assert!(t.records.is_subject_revoked(&subject("partner:bolt")).is_err());
        assert!(t.records.revocations().is_err());
    }
}

#[test]
fn read_only_instance_without_the_column_families_sees_no_records() {
    let dir = tempfile::tempdir().unwrap();
    drop(fwrepo_db::Db::open(dir.path(), &["other"], fwrepo_db::Mode::ReadWrite).unwrap());
    let ro = fwrepo_db::Db::open(dir.path(), COLUMN_FAMILIES, fwrepo_db::Mode::ReadOnly).unwrap();
    let records = Entitlements::new(std::sync::Arc::new(ro));
    assert!(records.records().unwrap().is_empty());
    assert!(records.revocations().unwrap().is_empty());
    assert!(records.serial(&Serial::new("S1").unwrap()).unwrap().is_none());
    assert!(records.partner_by_credential("x").unwrap().is_none());
}

#[test]
fn csv_with_byte_order_mark_and_quoted_fields_imports() {
    let t = temp_records();
    let csv = "\u{feff}partner,name,level,status,models,may_mirror,credential_sha256\n\"p1\",\"Name, with comma\",expert,active,\"DL380 Gen9; DL360 Gen9\",false,\n";
    t.records.import("bom.csv", csv.as_bytes(), NOW).unwrap();
    let p = t.records.partner(&PartnerId::new("p1").unwrap()).unwrap().unwrap();
    assert_eq!(p.name, "Name, with comma");
    assert_eq!(p.models, models("DL360 Gen9;DL380 Gen9"));
}
