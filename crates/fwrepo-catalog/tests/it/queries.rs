//! Queries over the three-release fixture.

use fwrepo_catalog::{Error, Kind};

use crate::support::*;

fn ids(summaries: &[fwrepo_catalog::ReleaseSummary]) -> Vec<&str> {
    summaries.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn models_are_listed_sorted() {
    let (_dir, cat) = catalog_with_series();
    let models: Vec<String> = cat.models().unwrap().into_iter().map(String::from).collect();
    // Byte order: `DL360p` < `DL380 Gen9` (space) < `DL380p`.
    assert_eq!(models, [BL460C, DL360P, DL380G9, DL380P]);
    assert!(cat.has_model(&model(DL380G9)).unwrap());
    assert!(!cat.has_model(&model("ProLiant DL580 Gen8")).unwrap());
}

#[test]
fn releases_for_a_model_come_newest_first() {
    let (_dir, cat) = catalog_with_series();
    let dl380p = cat.releases_for_model(&model(DL380P)).unwrap();
    assert_eq!(ids(&dl380p), ["2014.06.0", "2014.02.0", "2013.09.0"]);
    // Component counts are the model's, not the release's.
    assert_eq!(dl380p.iter().map(|s| s.components).collect::<Vec<_>>(), [2, 4, 4]);
    assert_eq!(dl380p[1].date.to_string(), "2014-02-20");
    assert_eq!(dl380p[1].name, "Service Pack for ProLiant 2014.02.0");
    assert_eq!(ids(&cat.releases_for_model(&model(BL460C)).unwrap()), ["2014.02.0", "2013.09.0"]);
    assert_eq!(ids(&cat.releases_for_model(&model(DL380G9)).unwrap()), ["2014.06.0"]);
    let err = cat.releases_for_model(&model("ProLiant DL580 Gen8")).unwrap_err();
    assert!(matches!(err, Error::UnknownModel { ref model } if model.as_str() == "ProLiant DL580 Gen8"), "{err}");
}

#[test]
fn releases_of_one_date_order_by_id_as_versions() {
    let (_dir, cat) = catalog();
    // Added out of order; as strings "2014.10.0" < "2014.9.0", as versions it is newer.
    for (i, rid) in ["2014.9.0", "2014.10.0", "2014.9.1"].into_iter().enumerate() {
        let file = format!("f{i}.bin");
        cat.add_release(&release(rid, "2014-11-01", vec![component(ILO, Kind::Firmware, "1.0", &file, &[DL380P])]))
            .unwrap();
    }
    cat.add_release(&release(
        "2014.1.0",
        "2014-11-02",
        vec![component(ILO, Kind::Firmware, "1.0", "g.bin", &[DL380P])],
    ))
    .unwrap();
    let got = cat.releases_for_model(&model(DL380P)).unwrap();
    // The later date wins over a greater id.
    assert_eq!(ids(&got), ["2014.1.0", "2014.10.0", "2014.9.1", "2014.9.0"]);
    let all: Vec<String> = cat.release_ids().unwrap().into_iter().map(String::from).collect();
    assert_eq!(all, ["2014.1.0", "2014.9.0", "2014.9.1", "2014.10.0"]);
}

#[test]
fn a_release_by_id_round_trips() {
    let (_dir, cat) = catalog_with_series();
    for r in series() {
        assert_eq!(cat.release(&r.id).unwrap(), Some(r));
    }
    assert_eq!(cat.release(&id("2099.01.0")).unwrap(), None);
}

#[test]
fn components_of_a_release_for_a_model() {
    let (_dir, cat) = catalog_with_series();
    let names = |rid: &str, m: &str| -> Vec<String> {
        cat.components(&id(rid), &model(m)).unwrap().into_iter().map(|c| c.name.to_string()).collect()
    };
    assert_eq!(names("2014.06.0", DL380G9), [ILO, ROM_P89, NIC, SUT]);
    assert_eq!(names("2014.06.0", DL380P), [ILO, NIC]);
    assert_eq!(names("2013.09.0", BL460C), [ILO, NIC]);
    assert!(names("2014.06.0", BL460C).is_empty());
    let ilo = &cat.components(&id("2014.02.0"), &model(DL360P)).unwrap()[0];
    assert_eq!(
        (ilo.kind, ilo.version.as_str(), ilo.target.as_str()),
        (Kind::Firmware, "1.40", "firmware/cp022345.scexe")
    );
    assert!(matches!(cat.components(&id("2099.01.0"), &model(DL380P)), Err(Error::UnknownRelease { .. })));
}

#[test]
fn blob_models_are_the_union_over_releases() {
    let (_dir, cat) = catalog_with_series();
    let names =
        |file: &str| -> Vec<String> { cat.blob_models(&blob(file)).unwrap().into_iter().map(String::from).collect() };
    // Smart Array file: DL380p, DL360p in 2013.09.0, plus BL460c in 2014.02.0.
    assert_eq!(names("cp020003.scexe"), [BL460C, DL360P, DL380P]);
    // NIC driver file of 2014.02.0, republished for the Gen9 by 2014.06.0.
    assert_eq!(names("cp022347.rpm"), [BL460C, DL360P, DL380G9, DL380P]);
    assert_eq!(names("cp023457.scexe"), [DL380G9]);
    assert!(names("not-published.bin").is_empty());
}

#[test]
fn entitlement_check_asks_whether_a_blob_applies_to_any_token_model() {
    let (_dir, cat) = catalog_with_series();
    let gen9_rom = blob("cp023457.scexe");
    assert!(cat.blob_applies_to(&gen9_rom, [&model(DL380G9)]).unwrap());
    assert!(cat.blob_applies_to(&gen9_rom, &[model(DL380P), model(DL380G9)]).unwrap());
    assert!(!cat.blob_applies_to(&gen9_rom, &[model(DL380P), model(BL460C)]).unwrap());
    assert!(!cat.blob_applies_to(&gen9_rom, &[]).unwrap());
    assert!(!cat.blob_applies_to(&blob("not-published.bin"), [&model(DL380P)]).unwrap());
    // A model whose name extends another's is a different model.
    assert!(!cat.blob_applies_to(&gen9_rom, [&model("ProLiant DL380 Gen9 X")]).unwrap());
    assert!(!cat.blob_applies_to(&gen9_rom, [&model("ProLiant DL380")]).unwrap());
}

#[test]
fn target_paths_resolve_to_their_component() {
    let (_dir, cat) = catalog_with_series();
    let t = cat.target(&"firmware/cp022347.rpm".parse().unwrap()).unwrap().unwrap();
    assert_eq!((t.name.as_str(), t.kind, t.version.as_str()), (NIC, Kind::Driver, "1.10"));
    assert_eq!(t.blob, blob("cp022347.rpm"));
    assert_eq!(t.length, component(NIC, Kind::Driver, "1.10", "cp022347.rpm", &[]).length);
    let releases: Vec<String> = t.releases.into_iter().map(String::from).collect();
    assert_eq!(releases, ["2014.02.0", "2014.06.0"]);
    assert_eq!(t.models.len(), 4);
    assert_eq!(cat.target(&"firmware/cp023456.scexe".parse().unwrap()).unwrap().unwrap().releases, [id("2014.06.0")]);
    assert_eq!(cat.target(&"firmware/nope.bin".parse().unwrap()).unwrap(), None);
    // A path that is a prefix of a stored one names nothing.
    assert_eq!(cat.target(&"firmware/cp022347".parse().unwrap()).unwrap(), None);
}
