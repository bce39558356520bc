//! Fixtures: a catalog on a temporary database and a three-release SPP series.

use std::sync::Arc;

use fwrepo_catalog::{COLUMN_FAMILIES, Catalog, Component, Digest, Kind, ModelName, Release, ReleaseId, Sha256};
use fwrepo_db::{Db, Mode};

pub const DL380P: &str = "ProLiant DL380p Gen8";
pub const DL360P: &str = "ProLiant DL360p Gen8";
pub const BL460C: &str = "ProLiant BL460c Gen8";
pub const DL380G9: &str = "ProLiant DL380 Gen9";

pub const ILO: &str = "iLO 4 Firmware";
pub const ROM_P70: &str = "System ROM P70";
pub const ROM_P89: &str = "System ROM P89";
pub const P420I: &str = "Smart Array P420i Controller";
pub const NIC: &str = "HP Ethernet 1Gb Driver";
pub const SUT: &str = "Smart Update Tools";

/// A catalog on a fresh writable database, and the directory that holds it.
pub fn catalog() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), COLUMN_FAMILIES, Mode::ReadWrite).unwrap();
    (dir, Catalog::new(Arc::new(db)))
}

pub fn model(s: &str) -> ModelName {
    ModelName::new(s).unwrap()
}

pub fn id(s: &str) -> ReleaseId {
    ReleaseId::new(s).unwrap()
}

/// The blob id a fixture component's file `file` would have.
pub fn blob(file: &str) -> Digest {
    Digest::of(file.as_bytes())
}

/// A component whose file is named `file`; its bytes, and so its blob and length, derive from
/// that name, so one name means one file across releases.
pub fn component(name: &str, kind: Kind, version: &str, file: &str, models: &[&str]) -> Component {
    Component {
        name: name.parse().unwrap(),
        kind,
        version: version.parse().unwrap(),
        target: format!("firmware/{file}").parse().unwrap(),
        blob: blob(file),
        // Distinct, easy-to-sum sizes.
        length: 1000 * file.len() as u64 + file.bytes().map(u64::from).sum::<u64>(),
        sha256: Sha256(*Digest::of(format!("sha256 of {file}").as_bytes()).as_bytes()),
        models: models.iter().map(|m| model(m)).collect(),
    }
}

pub fn release(id_: &str, date: &str, components: Vec<Component>) -> Release {
    Release { id: id(id_), name: format!("Service Pack for ProLiant {id_}"), date: date.parse().unwrap(), components }
}

/// Three releases over four models. The Smart Array file of 2013.09.0 is published again by
/// 2014.02.0 for one more model, and the NIC driver file of 2014.02.0 again by 2014.06.0.
/// BL460c is last served by 2014.02.0; the Gen9 only from 2014.06.0.
pub fn series() -> Vec<Release> {
    use Kind::*;
    vec![
        release(
            "2013.09.0",
            "2013-09-05",
            vec![
                component(ILO, Firmware, "1.30", "cp020001.scexe", &[DL380P, DL360P, BL460C]),
                component(ROM_P70, Firmware, "2013.07.01", "cp020002.scexe", &[DL380P]),
                component(P420I, Firmware, "3.54", "cp020003.scexe", &[DL380P, DL360P]),
                component(NIC, Driver, "1.9", "cp020004.rpm", &[DL380P, DL360P, BL460C]),
            ],
        ),
        release(
            "2014.02.0",
            "2014-02-20",
            vec![
                component(ILO, Firmware, "1.40", "cp022345.scexe", &[DL380P, DL360P, BL460C]),
                component(ROM_P70, Firmware, "2014.02.10", "cp022346.scexe", &[DL380P]),
                component(P420I, Firmware, "3.54", "cp020003.scexe", &[DL380P, DL360P, BL460C]),
                component(NIC, Driver, "1.10", "cp022347.rpm", &[DL380P, DL360P, BL460C]),
            ],
        ),
        release(
            "2014.06.0",
            "2014-06-15",
            vec![
                component(ILO, Firmware, "1.100", "cp023456.scexe", &[DL380P, DL360P, DL380G9]),
                component(ROM_P89, Firmware, "1.20", "cp023457.scexe", &[DL380G9]),
                component(NIC, Driver, "1.10", "cp022347.rpm", &[DL380P, DL360P, DL380G9]),
                component(SUT, Software, "1.5.0", "sut-1.5.0.rpm", &[DL380G9]),
            ],
        ),
    ]
}

/// A catalog holding [`series`], each release added on its own.
pub fn catalog_with_series() -> (tempfile::TempDir, Catalog) {
    let (dir, cat) = catalog();
    for r in series() {
        cat.add_release(&r).unwrap();
    }
    (dir, cat)
}
