//! Releases and plans from signed metadata: newest release by date then id, actions by the
//! catalog's version ordering, totals counting a shared file once.

use std::collections::BTreeMap;

use fwget::catalog::{Action, Catalog};
use fwrepo_version::Version;

use crate::support::*;

fn catalog() -> Catalog {
    let mut o = Origin::new();
    let rom1 = data(1, 20_000);
    let rom2 = data(2, 20_000);
    let nic = data(3, 9_000);
    let shared = data(4, 5_000);
    o.release(
        "2025.01.0",
        "2025-01-15",
        &[
            Comp { name: "System ROM", version: "1.9", models: &[DL380], bytes: &rom1 },
            Comp { name: "NIC", version: "10.2", models: &[DL380, DL360], bytes: &nic },
        ],
    );
    o.release(
        "2025.05.0",
        "2025-05-15",
        &[
            Comp { name: "System ROM", version: "1.10", models: &[DL380], bytes: &rom2 },
            Comp { name: "NIC", version: "10.2", models: &[DL380, DL360], bytes: &nic },
            Comp { name: "Tool A", version: "2.0", models: &[DL380], bytes: &shared },
            Comp { name: "Tool B", version: "2.0", models: &[DL380], bytes: &shared },
        ],
    );
    // Same date as 2025.05.0 but a lower id as a version (5 < 10): not the newest.
    o.release(
        "2025.5.1",
        "2025-05-15",
        &[Comp { name: "NIC", version: "9.0", models: &[DL360], bytes: &data(5, 100) }],
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let (_, targets) = rt.block_on(c.refresh()).unwrap();
    Catalog::from_targets(targets)
}

fn inv(pairs: &[(&str, &str)]) -> BTreeMap<String, Version> {
    pairs.iter().map(|(n, v)| (n.to_string(), Version::new(*v).unwrap())).collect()
}

#[test]
fn models_and_releases_come_from_signed_metadata_newest_first() {
    let cat = catalog();
    assert_eq!(cat.models(), vec![DL360.to_owned(), DL380.to_owned()]);
    let ids: Vec<&str> = cat.releases_for(DL380).iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["2025.05.0", "2025.01.0"]);
    let ids: Vec<&str> = cat.releases_for(DL360).iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["2025.5.1", "2025.05.0", "2025.01.0"], "same date: id ordered as a version, 5.1 > 05.0");
}

/// Inventory, release, expected (component, action) and (download files, bytes).
type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, Vec<(&'a str, Action)>, (usize, u64));

#[test]
fn plan_table() {
    let cat = catalog();
    use Action::*;
    let cases: Vec<Case> = vec![
        (
            &[],
            None,
            vec![("NIC", Install), ("System ROM", Install), ("Tool A", Install), ("Tool B", Install)],
            (3, 34_000),
        ),
        (
            &[("System ROM", "1.9"), ("NIC", "10.2")],
            None,
            vec![("NIC", UpToDate), ("System ROM", Upgrade), ("Tool A", Install), ("Tool B", Install)],
            (2, 25_000),
        ),
        (
            &[("System ROM", "1.10"), ("NIC", "10.10"), ("Tool A", "2.0"), ("Tool B", "2.0")],
            None,
            vec![("NIC", InstalledNewer), ("System ROM", UpToDate), ("Tool A", UpToDate), ("Tool B", UpToDate)],
            (0, 0),
        ),
        (
            &[("System ROM", "1.10")],
            Some("2025.01.0"),
            vec![("NIC", Install), ("System ROM", InstalledNewer)],
            (1, 9_000),
        ),
    ];
    for (inventory, release, want, (files, bytes)) in cases {
        let plan = cat.plan(DL380, &inv(inventory), release).unwrap();
        let got: Vec<(&str, Action)> = plan.items.iter().map(|i| (i.component.as_str(), i.action)).collect();
        assert_eq!(got, want, "inventory {inventory:?}");
        assert_eq!((plan.totals.download_files, plan.totals.download_bytes), (files, bytes), "inventory {inventory:?}");
    }
    let plan = cat.plan(DL380, &inv(&[("Old Tool", "1")]), None).unwrap();
    assert_eq!(plan.not_in_release, vec!["Old Tool".to_owned()]);
    assert!(cat.plan("ProLiant Unknown", &inv(&[]), None).is_err());
}
