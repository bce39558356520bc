//! Update plans: install, upgrade, up to date, installed newer, chosen releases, errors, and
//! the JSON shapes of `POST /v1/catalog/plan`.

use std::collections::BTreeMap;

use fwrepo_catalog::{Action, Error, Kind, MAX_INVENTORY, Plan, PlanItem, PlanRequest};

use crate::support::*;

fn request(m: &str, inventory: &[(&str, &str)], release: Option<&str>) -> PlanRequest {
    PlanRequest {
        model: model(m),
        inventory: inventory.iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect(),
        release: release.map(id),
    }
}

fn item<'a>(plan: &'a Plan, name: &str) -> &'a PlanItem {
    plan.items.iter().find(|i| i.component.as_str() == name).unwrap_or_else(|| panic!("no {name} in plan"))
}

fn length(file: &str) -> u64 {
    component(ILO, Kind::Firmware, "0", file, &[]).length
}

#[test]
fn empty_inventory_installs_everything_of_the_newest_release() {
    let (_dir, cat) = catalog_with_series();
    let plan = cat.plan(&request(DL380G9, &[], None)).unwrap();
    assert_eq!(plan.release.as_str(), "2014.06.0");
    assert_eq!(plan.release_date.to_string(), "2014-06-15");
    let names: Vec<&str> = plan.items.iter().map(|i| i.component.as_str()).collect();
    // Sorted by name.
    assert_eq!(names, [NIC, SUT, ROM_P89, ILO]);
    assert!(plan.items.iter().all(|i| i.action == Action::Install && i.from.is_none()));
    let files = ["cp023456.scexe", "cp023457.scexe", "cp022347.rpm", "sut-1.5.0.rpm"];
    assert_eq!(plan.totals.install, 4);
    assert_eq!(plan.totals.download_files, 4);
    assert_eq!(plan.totals.download_bytes, files.iter().map(|f| length(f)).sum::<u64>());
    let ilo = item(&plan, ILO);
    assert_eq!(
        (ilo.to.as_str(), ilo.target.as_str(), ilo.blob),
        ("1.100", "firmware/cp023456.scexe", blob("cp023456.scexe"))
    );
    assert_eq!(ilo.length, length("cp023456.scexe"));
}

#[test]
fn each_action_follows_version_order_not_string_order() {
    let (_dir, cat) = catalog_with_series();
    let inventory = [
        (ILO, "1.40"),            // 1.40 < 1.100: upgrade (as strings it would look newer)
        (NIC, "1.10"),            // equal: nothing to do
        (P420I, "3.54"),          // not in 2014.06.0 for this model: left alone
        ("Some Other Tool", "7"), // unknown to the catalog: left alone
    ];
    let plan = cat.plan(&request(DL380P, &inventory, None)).unwrap();
    assert_eq!(plan.release.as_str(), "2014.06.0");
    let ilo = item(&plan, ILO);
    assert_eq!(ilo.action, Action::Upgrade);
    assert_eq!((ilo.from.as_ref().map(|v| v.as_str()), ilo.to.as_str()), (Some("1.40"), "1.100"));
    assert_eq!(item(&plan, NIC).action, Action::UpToDate);
    assert_eq!(plan.items.len(), 2);
    let left: Vec<&str> = plan.not_in_release.iter().map(|n| n.as_str()).collect();
    assert_eq!(left, ["Smart Array P420i Controller", "Some Other Tool"]);
    assert_eq!((plan.totals.upgrade, plan.totals.up_to_date, plan.totals.install), (1, 1, 0));
    assert_eq!(plan.totals.download_bytes, length("cp023456.scexe"));
}

#[test]
fn equal_versions_spelled_differently_need_nothing() {
    let (_dir, cat) = catalog_with_series();
    let plan = cat.plan(&request(DL380P, &[(ILO, "1.0100"), (NIC, "1-10")], None)).unwrap();
    assert!(plan.items.iter().all(|i| i.action == Action::UpToDate), "{plan:?}");
    assert_eq!(plan.totals.download_bytes, 0);
    assert_eq!(plan.totals.download_files, 0);
}

#[test]
fn newer_installed_version_is_flagged_and_not_downloaded() {
    let (_dir, cat) = catalog_with_series();
    let plan = cat.plan(&request(DL380P, &[(ILO, "2.00"), (NIC, "1.9")], None)).unwrap();
    let ilo = item(&plan, ILO);
    assert_eq!(ilo.action, Action::InstalledNewer);
    assert!(!ilo.action.downloads());
    assert_eq!(item(&plan, NIC).action, Action::Upgrade);
    assert_eq!(plan.totals.installed_newer, 1);
    assert_eq!(plan.totals.download_bytes, length("cp022347.rpm"));
}

#[test]
fn a_chosen_older_release_is_planned_against() {
    let (_dir, cat) = catalog_with_series();
    let inventory = [(ILO, "1.30"), (ROM_P70, "2014.02.10"), (NIC, "1.10")];
    let plan = cat.plan(&request(DL380P, &inventory, Some("2013.09.0"))).unwrap();
    assert_eq!(plan.release.as_str(), "2013.09.0");
    let actions: BTreeMap<&str, Action> = plan.items.iter().map(|i| (i.component.as_str(), i.action)).collect();
    assert_eq!(
        actions,
        BTreeMap::from([
            (ILO, Action::UpToDate),
            (ROM_P70, Action::InstalledNewer),
            (P420I, Action::Install),
            (NIC, Action::InstalledNewer),
        ])
    );
    assert_eq!(plan.totals.download_bytes, length("cp020003.scexe"));
    // BL460c's newest release is 2014.02.0, whatever newer releases other models have.
    assert_eq!(cat.plan(&request(BL460C, &[], None)).unwrap().release.as_str(), "2014.02.0");
}

#[test]
fn unknown_model_is_an_error_naming_it() {
    let (_dir, cat) = catalog_with_series();
    let err = cat.plan(&request("ProLiant DL580 Gen8", &[], None)).unwrap_err();
    assert!(matches!(err, Error::UnknownModel { ref model } if model.as_str() == "ProLiant DL580 Gen8"), "{err}");
    assert!(err.to_string().contains("ProLiant DL580 Gen8"));
    // Also when a release is chosen: the model is checked first.
    assert!(matches!(
        cat.plan(&request("ProLiant DL580 Gen8", &[], Some("2014.02.0"))),
        Err(Error::UnknownModel { .. })
    ));
}

#[test]
fn unknown_release_is_an_error_naming_it() {
    let (_dir, cat) = catalog_with_series();
    let err = cat.plan(&request(DL380P, &[], Some("2099.01.0"))).unwrap_err();
    assert!(matches!(err, Error::UnknownRelease { ref release } if release.as_str() == "2099.01.0"), "{err}");
}

#[test]
fn chosen_release_without_the_model_is_an_error() {
    let (_dir, cat) = catalog_with_series();
    let err = cat.plan(&request(DL380G9, &[], Some("2014.02.0"))).unwrap_err();
    assert!(
        matches!(err, Error::ReleaseNotForModel { ref release, ref model }
        if release.as_str() == "2014.02.0" && model.as_str() == DL380G9),
        "{err}"
    );
}

#[test]
fn a_file_shared_by_two_components_is_downloaded_once() {
    let (_dir, cat) = catalog();
    let mut b = component(NIC, Kind::Driver, "2.0", "bundle.bin", &[DL380P]);
    b.target = "firmware/bundle-copy.bin".parse().unwrap();
    let r = release("2015.01.0", "2015-01-10", vec![component(ILO, Kind::Firmware, "2.0", "bundle.bin", &[DL380P]), b]);
    cat.add_release(&r).unwrap();
    let plan = cat.plan(&request(DL380P, &[], None)).unwrap();
    assert_eq!(plan.totals.install, 2);
    assert_eq!(plan.totals.download_files, 1);
    assert_eq!(plan.totals.download_bytes, length("bundle.bin"));
}

#[test]
fn oversized_inventory_is_refused() {
    let (_dir, cat) = catalog_with_series();
    let mut req = request(DL380P, &[], None);
    for i in 0..=MAX_INVENTORY {
        req.inventory.insert(format!("component {i}").parse().unwrap(), "1.0".parse().unwrap());
    }
    assert!(matches!(cat.plan(&req), Err(Error::InventoryTooLarge { entries, .. }) if entries == MAX_INVENTORY + 1));
}

#[test]
fn request_and_plan_have_the_documented_json_shape() {
    let (_dir, cat) = catalog_with_series();
    let req: PlanRequest = serde_json::from_str(
        r#"{"model": "ProLiant DL380p Gen8", "inventory": {"iLO 4 Firmware": "1.40"}, "release": "2014.02.0"}"#,
    )
    .unwrap();
    assert_eq!(req, request(DL380P, &[(ILO, "1.40")], Some("2014.02.0")));
    // `inventory` and `release` may be left out.
    let bare: PlanRequest = serde_json::from_str(r#"{"model": "ProLiant DL380p Gen8"}"#).unwrap();
    assert_eq!(bare, request(DL380P, &[], None));
    for bad in [
        r#"{"model": "ProLiant DL380p Gen8", "extra": 1}"#,
        r#"{"model": ""}"#,
        r#"{"model": "ProLiant DL380p Gen8", "inventory": {"iLO 4 Firmware": ""}}"#,
        r#"{"model": "ProLiant DL380p Gen8", "release": "../x"}"#,
        r#"{"inventory": {}}"#,
    ] {
        assert!(serde_json::from_str::<PlanRequest>(bad).is_err(), "{bad}");
    }

    let plan = cat.plan(&req).unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["release"], "2014.02.0");
    assert_eq!(json["release_date"], "2014-02-20");
    let ilo = json["items"].as_array().unwrap().iter().find(|i| i["component"] == ILO).unwrap();
    assert_eq!(ilo["action"], "up_to_date");
    assert_eq!(ilo["from"], "1.40");
    assert_eq!(ilo["kind"], "firmware");
    assert_eq!(ilo["blob"], blob("cp022345.scexe").to_hex());
    assert_eq!(json["totals"]["download_bytes"], plan.totals.download_bytes);
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, plan);
}
