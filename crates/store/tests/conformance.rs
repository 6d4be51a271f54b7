//! Runs the backend conformance suite against every backend.

use regmesh_store::{conformance, MemStore, RedbStore, Store};

#[test]
fn memory_backend_conforms() {
    conformance::run(&|| Box::new(MemStore::new()) as Box<dyn Store>);
}

#[test]
fn redb_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::cell::Cell::new(0);
    conformance::run(&|| {
        n.set(n.get() + 1);
        Box::new(RedbStore::open(&dir.path().join(format!("s{}.redb", n.get())), 1 << 20).unwrap()) as Box<dyn Store>
    });
    conformance::run_durable(dir.path(), &|p| {
        Box::new(RedbStore::open(p, 1 << 20).unwrap()) as Box<dyn Store>
    });
}

#[test]
fn redb_refuses_unknown_layout() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.redb");
    let s = RedbStore::open(&p, 1 << 20).unwrap();
    s.apply(&regmesh_store::WriteBatch {
        meta: vec![("store.format".into(), b"99".to_vec())],
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let e = RedbStore::open(&p, 1 << 20).err().expect("must refuse");
    assert!(
        matches!(
            e,
            regmesh_store::StoreError::NewerFormat {
                what: "store layout",
                found: 99,
                supported: 1
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was changed"), "{e}");
    // Refusing wrote nothing: the cell still says 99.
    let db = redb::Database::open(&p).unwrap();
    let r = redb::ReadableDatabase::begin_read(&db).unwrap();
    let t = r.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta")).unwrap();
    assert_eq!(t.get("store.format").unwrap().unwrap().value(), b"99");
}

#[test]
fn redb_refuses_a_layout_that_is_not_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.redb");
    let s = RedbStore::open(&p, 1 << 20).unwrap();
    assert_eq!(s.meta("store.format").unwrap().as_deref(), Some(&b"1"[..]));
    s.apply(&regmesh_store::WriteBatch {
        meta: vec![("store.format".into(), b"x".to_vec())],
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let e = RedbStore::open(&p, 1 << 20).err().expect("must refuse");
    assert!(matches!(e, regmesh_store::StoreError::Corrupt(_)), "{e}");
}
