//! The catalog across reopening, and read-only instances (with and without its column
//! families).

use std::sync::Arc;

use fwrepo_catalog::{COLUMN_FAMILIES, Catalog, Error};
use fwrepo_db::{Db, Mode};

use crate::support::*;

#[test]
fn catalog_survives_reopen() {
    let (dir, cat) = catalog_with_series();
    let models = cat.models().unwrap();
    drop(cat);
    let db = Db::open(dir.path(), COLUMN_FAMILIES, Mode::ReadWrite).unwrap();
    let cat = Catalog::new(Arc::new(db));
    assert_eq!(cat.models().unwrap(), models);
    for r in series() {
        assert_eq!(cat.release(&r.id).unwrap(), Some(r));
    }
    assert_eq!(cat.plan(&request_for(DL380P)).unwrap().release.as_str(), "2014.06.0");
    // The duplicate check sees what the earlier process wrote.
    assert!(matches!(cat.add_release(&series()[0]), Err(Error::DuplicateRelease { .. })));
}

fn request_for(m: &str) -> fwrepo_catalog::PlanRequest {
    fwrepo_catalog::PlanRequest { model: model(m), inventory: Default::default(), release: None }
}

#[test]
fn read_only_instance_without_the_column_families_is_an_empty_catalog() {
    let dir = tempfile::tempdir().unwrap();
    // A data dir whose writer has not opened the catalog yet.
    let writer = Db::open(dir.path(), &["store.blobs"], Mode::ReadWrite).unwrap();
    let reader = Db::open(dir.path(), COLUMN_FAMILIES, Mode::ReadOnly).unwrap();
    assert!(reader.cf(fwrepo_catalog::CF_RELEASES).is_none());
    let cat = Catalog::new(Arc::new(reader));
    assert!(cat.models().unwrap().is_empty());
    assert!(cat.release_ids().unwrap().is_empty());
    assert_eq!(cat.release(&id("2014.02.0")).unwrap(), None);
    assert!(!cat.has_model(&model(DL380P)).unwrap());
    assert!(cat.blob_models(&blob("cp022345.scexe")).unwrap().is_empty());
    assert!(!cat.blob_applies_to(&blob("cp022345.scexe"), [&model(DL380P)]).unwrap());
    assert_eq!(cat.target(&"firmware/cp022345.scexe".parse().unwrap()).unwrap(), None);
    assert!(matches!(cat.releases_for_model(&model(DL380P)), Err(Error::UnknownModel { .. })));
    assert!(matches!(cat.plan(&request_for(DL380P)), Err(Error::UnknownModel { .. })));
    assert!(matches!(cat.components(&id("2014.02.0"), &model(DL380P)), Err(Error::UnknownRelease { .. })));
    // A reader cannot stage: it lacks the column families to write to.
    let mut batch = fwrepo_db::WriteBatch::default();
    assert!(matches!(cat.stage_release(&series()[0], &mut batch), Err(Error::Db(_))));
    assert!(batch.is_empty());
    drop(writer);
}

#[test]
fn read_only_instance_sees_releases_after_catch_up() {
    let (dir, writer) = catalog();
    let reader = Catalog::new(Arc::new(Db::open(dir.path(), COLUMN_FAMILIES, Mode::ReadOnly).unwrap()));
    assert!(reader.models().unwrap().is_empty());
    writer.add_release(&series()[1]).unwrap();
    reader.db().catch_up().unwrap();
    assert_eq!(reader.release(&id("2014.02.0")).unwrap().as_ref(), Some(&series()[1]));
    assert_eq!(reader.plan(&request_for(BL460C)).unwrap().release.as_str(), "2014.02.0");
}

#[test]
fn records_with_an_unknown_format_marker_are_refused_not_misread() {
    let (_dir, cat) = catalog_with_series();
    let cf = cat.db().require_cf(fwrepo_catalog::CF_RELEASES).unwrap();
    let mut batch = fwrepo_db::WriteBatch::default();
    batch.put_cf(cf, b"2014.02.0", fwrepo_db::encode(fwrepo_catalog::FORMAT + 1, b"{}"));
    batch.put_cf(cf, b"2013.09.0", fwrepo_db::encode(fwrepo_catalog::FORMAT, b"not json"));
    cat.db().write(batch, false).unwrap();
    assert!(matches!(cat.release(&id("2014.02.0")), Err(Error::Db(fwrepo_db::Error::UnknownFormat { .. }))));
    let err = cat.release(&id("2013.09.0")).unwrap_err();
    assert!(matches!(err, Error::CorruptRecord { key: ref k, .. } if k == "2013.09.0"), "{err}");
}
