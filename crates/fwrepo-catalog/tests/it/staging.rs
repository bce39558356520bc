//! Staging: validation errors name what they are about, a rejected release adds nothing to the
//! caller's batch, and staged records become visible only when the caller commits.

use fwrepo_catalog::{Catalog, Error, Kind, Release};
use fwrepo_db::WriteBatch;

use crate::support::*;

/// A batch already holding a write of someone else (as `publish` would have), so that a test
/// can check the catalog leaves it exactly as it was.
fn busy_batch(cat: &Catalog) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.put_cf(cat.db().require_cf("default").unwrap(), b"someone else's key", b"\x01x");
    batch
}

/// Stages `release` into a busy batch, expects an error, and checks the batch is untouched.
fn rejected(cat: &Catalog, release: &Release) -> Error {
    let mut batch = busy_batch(cat);
    let before = batch.data().to_vec();
    let err = cat.stage_release(release, &mut batch).expect_err("release should be rejected");
    assert_eq!(batch.data(), &before[..], "a rejected release changed the batch ({err})");
    err
}

#[test]
fn duplicate_release_id_is_rejected_by_name() {
    let (_dir, cat) = catalog_with_series();
    let again = release("2014.02.0", "2014-03-01", vec![component(ILO, Kind::Firmware, "9.9", "new.bin", &[DL380P])]);
    match rejected(&cat, &again) {
        Error::DuplicateRelease { release } => assert_eq!(release.as_str(), "2014.02.0"),
        other => panic!("unexpected {other}"),
    }
    assert!(rejected(&cat, &again).to_string().contains("2014.02.0"));
}

#[test]
fn duplicate_release_id_within_one_staging_call_is_rejected() {
    let (_dir, cat) = catalog();
    let a = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P])]);
    let b = release("2015.01.0", "2015-01-11", vec![component(ILO, Kind::Firmware, "2.1", "b.bin", &[DL380P])]);
    let mut batch = busy_batch(&cat);
    let before = batch.data().to_vec();
    let err = cat.stage_releases(&[a, b], &mut batch).unwrap_err();
    assert!(matches!(err, Error::DuplicateRelease { ref release } if release.as_str() == "2015.01.0"), "{err}");
    assert_eq!(batch.data(), &before[..]);
}

#[test]
fn component_without_models_is_rejected() {
    let (_dir, cat) = catalog();
    let r = release(
        "2015.01.0",
        "2015-01-10",
        vec![
            component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P]),
            component(NIC, Kind::Driver, "2.0", "b.bin", &[]),
        ],
    );
    assert!(matches!(rejected(&cat, &r), Error::NoModels { component, .. } if component.as_str() == NIC));
}

#[test]
fn model_listed_twice_is_rejected() {
    let (_dir, cat) = catalog();
    let r = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P, DL380P])]);
    assert!(matches!(rejected(&cat, &r), Error::DuplicateModel { model, .. } if model.as_str() == DL380P));
}

#[test]
fn same_component_name_twice_for_one_model_is_rejected() {
    let (_dir, cat) = catalog();
    let r = release(
        "2015.01.0",
        "2015-01-10",
        vec![
            component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P, DL360P]),
            component(ILO, Kind::Firmware, "2.1", "b.bin", &[BL460C, DL360P]),
        ],
    );
    match rejected(&cat, &r) {
        Error::DuplicateComponent { release, component, model } => {
            assert_eq!((release.as_str(), component.as_str(), model.as_str()), ("2015.01.0", ILO, DL360P));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn same_component_name_for_disjoint_models_is_accepted() {
    let (_dir, cat) = catalog();
    let r = release(
        "2015.01.0",
        "2015-01-10",
        vec![
            component(ILO, Kind::Firmware, "2.0", "gen8.bin", &[DL380P, DL360P]),
            component(ILO, Kind::Firmware, "2.0", "gen9.bin", &[DL380G9]),
        ],
    );
    cat.add_release(&r).unwrap();
    let gen9 = cat.components(&id("2015.01.0"), &model(DL380G9)).unwrap();
    assert_eq!(gen9.len(), 1);
    assert_eq!(gen9[0].blob, blob("gen9.bin"));
}

#[test]
fn target_path_used_twice_in_a_release_is_rejected() {
    let (_dir, cat) = catalog();
    let mut second = component(NIC, Kind::Driver, "2.0", "b.bin", &[DL380P]);
    second.target = "firmware/a.bin".parse().unwrap();
    let r = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P]), second]);
    assert!(matches!(rejected(&cat, &r), Error::DuplicateTarget { target, .. } if target.as_str() == "firmware/a.bin"));
}

#[test]
fn target_path_naming_other_bytes_in_an_older_release_is_rejected() {
    let (_dir, cat) = catalog_with_series();
    // Same path as 2014.02.0's iLO file, different content.
    let mut c = component(ILO, Kind::Firmware, "1.40", "cp022345-rebuilt.scexe", &[DL380P]);
    c.target = "firmware/cp022345.scexe".parse().unwrap();
    let r = release("2015.01.0", "2015-01-10", vec![c]);
    match rejected(&cat, &r) {
        Error::TargetConflict { release, target, existing } => {
            assert_eq!(release.as_str(), "2015.01.0");
            assert_eq!(target.as_str(), "firmware/cp022345.scexe");
            assert_eq!(existing.as_str(), "2014.02.0");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn target_path_conflict_between_releases_of_one_call_is_rejected() {
    let (_dir, cat) = catalog();
    let a = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P])]);
    let mut c = component(ILO, Kind::Firmware, "2.1", "a2.bin", &[DL380P]);
    c.target = "firmware/a.bin".parse().unwrap();
    let b = release("2015.02.0", "2015-02-10", vec![c]);
    let mut batch = busy_batch(&cat);
    let before = batch.data().to_vec();
    let err = cat.stage_releases(&[a, b], &mut batch).unwrap_err();
    assert!(matches!(err, Error::TargetConflict { ref existing, .. } if existing.as_str() == "2015.01.0"), "{err}");
    assert_eq!(batch.data(), &before[..]);
}

#[test]
fn empty_release_and_bad_release_name_are_rejected() {
    let (_dir, cat) = catalog();
    assert!(matches!(rejected(&cat, &release("2015.01.0", "2015-01-10", vec![])), Error::EmptyRelease { .. }));
    let mut r = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P])]);
    r.name = String::new();
    assert!(matches!(rejected(&cat, &r), Error::InvalidReleaseName { .. }));
    r.name = "SPP\n2015".into();
    assert!(matches!(rejected(&cat, &r), Error::InvalidReleaseName { .. }));
}

#[test]
fn manifests_with_unknown_kinds_or_bad_fields_do_not_parse() {
    let good = serde_json::to_value(&series()[0]).unwrap();
    assert!(serde_json::from_value::<Release>(good.clone()).is_ok());
    let with = |pointer: &str, value: serde_json::Value| {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        serde_json::from_value::<Release>(v)
    };
    let err = with("/components/0/kind", "bios".into()).unwrap_err().to_string();
    assert!(err.contains("bios"), "{err}");
    assert!(with("/components/0/target", "../etc/passwd".into()).is_err());
    assert!(with("/components/0/target", "/abs".into()).is_err());
    assert!(with("/components/0/blob", "00".into()).is_err());
    assert!(with("/components/0/sha256", "XYZ".into()).is_err());
    assert!(with("/date", "2014-02-30".into()).is_err());
    assert!(with("/id", "../x".into()).is_err());
    assert!(with("/components/0/models/0", "".into()).is_err());
}

#[test]
fn staged_release_is_invisible_until_the_batch_is_written() {
    let (_dir, cat) = catalog();
    let r = &series()[0];
    let mut batch = WriteBatch::default();
    cat.stage_release(r, &mut batch).unwrap();
    assert!(!batch.is_empty());
    assert_eq!(cat.release(&r.id).unwrap(), None);
    assert!(cat.models().unwrap().is_empty());
    cat.db().write(batch, true).unwrap();
    assert_eq!(cat.release(&r.id).unwrap().as_ref(), Some(r));
    assert_eq!(cat.models().unwrap().len(), 3);
}

#[test]
fn catalog_writes_commit_together_with_the_callers_own() {
    let (_dir, cat) = catalog();
    let mut batch = busy_batch(&cat);
    let rs = series();
    cat.stage_releases(&rs, &mut batch).unwrap();
    cat.db().write(batch, true).unwrap();
    let cf = cat.db().require_cf("default").unwrap();
    assert!(cat.db().get(cf, b"someone else's key").unwrap().is_some());
    for r in &rs {
        assert_eq!(cat.release(&r.id).unwrap().as_ref(), Some(r));
    }
    // Shared files staged in one call keep every release's models.
    assert_eq!(cat.target(&"firmware/cp020003.scexe".parse().unwrap()).unwrap().unwrap().models.len(), 3);
}

#[test]
fn dropped_batch_leaves_the_catalog_as_it_was() {
    let (_dir, cat) = catalog_with_series();
    let before = cat.release_ids().unwrap();
    {
        let mut batch = WriteBatch::default();
        let r = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "a.bin", &[DL380P])]);
        cat.stage_release(&r, &mut batch).unwrap();
        // The caller's publish fails later and never writes the batch.
    }
    assert_eq!(cat.release_ids().unwrap(), before);
    assert!(!cat.blob_applies_to(&blob("a.bin"), [&model(DL380P)]).unwrap());
}
