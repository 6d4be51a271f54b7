//! Format versions of what a center stores besides record bytes (issue 10,
//! item 3): a store written before formats were named opens and reads; a
//! store of a newer format is refused at start-up, untouched.

use regmesh_core::{Kind, Prepared};
use regmesh_node::center::{Center, OpenError, WriteOp};
use regmesh_node::Config;
use regmesh_store::{MemStore, Store, StoreError, WriteBatch};
use serde_json::json;
use std::sync::Arc;

fn prepared(id: &str, addr: &str) -> Prepared {
    regmesh_front_agent::AgentKind
        .prepare(id, json!({"addresses": [addr]}))
        .unwrap()
}

async fn put(center: &Center, id: &str, addr: &str) {
    center
        .write(
            "agent",
            id,
            WriteOp::Put {
                prepared: prepared(id, addr),
                if_version: None,
                above: None,
            },
        )
        .await
        .unwrap();
}

fn open(cfg: &Config, store: &Arc<MemStore>) -> Result<Arc<Center>, OpenError> {
    Center::open_with(cfg, regmesh_front_agent::kinds(), Some(store.clone() as Arc<dyn Store>))
}

/// The metadata cells a center writes, but `center.format`.
const CELLS: [&str; 6] = ["center.id", "hlc", "seq", "change.reserved", "purged", "watermarks"];

#[tokio::test]
async fn a_store_written_before_formats_were_named_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_test("c1", dir.path());
    let now = Arc::new(MemStore::new());
    let center = open(&cfg, &now).unwrap();
    put(&center, "a1", "2001:db8::1").await;
    put(&center, "a2", "2001:db8::2").await;
    center.close();

    // The same data as an earlier regmesh wrote it: no `center.format`
    // cell, change-log entries without their two format bytes.
    let old = Arc::new(MemStore::new());
    let mut b = WriteBatch::default();
    now.scan(&mut |kind, id, bytes| {
        b.put(kind, id, bytes.to_vec());
        true
    })
    .unwrap();
    for (no, entry) in now.changes_after(0, 100).unwrap() {
        assert_eq!(&entry[..2], &[0, 2], "this build writes format 2");
        b.changes.push((no, entry[2..].to_vec()));
    }
    for cell in CELLS {
        if let Some(v) = now.meta(cell).unwrap() {
            b.meta.push((cell.into(), v));
        }
    }
    old.apply(&b).unwrap();
    assert_eq!(old.meta("center.format").unwrap(), None);

    let center = open(&cfg, &old).unwrap();
    assert_eq!(center.get("agent", "a2").unwrap().unwrap().id, "a2");
    put(&center, "a3", "2001:db8::3").await;
    // Old and new entries read side by side.
    let ids: Vec<String> = center
        .changes_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.record.id)
        .collect();
    assert_eq!(ids, ["a1", "a2", "a3"]);
    center.close();
    assert_eq!(old.meta("center.format").unwrap().as_deref(), Some(&b"2"[..]));
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_test("c1", dir.path());
    let store = Arc::new(MemStore::new());
    store
        .apply(&WriteBatch {
            meta: vec![("center.format".into(), b"3".to_vec())],
            ..Default::default()
        })
        .unwrap();
    let e = open(&cfg, &store).err().expect("a newer format must be refused");
    assert!(
        matches!(
            e,
            OpenError::Store(StoreError::NewerFormat {
                what: "center metadata",
                found: 3,
                supported: 2
            })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was changed"), "{e}");
    for cell in CELLS {
        assert_eq!(store.meta(cell).unwrap(), None, "{cell} was written");
    }
    assert_eq!(store.meta("center.format").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(store.change_bounds().unwrap(), None);
}
