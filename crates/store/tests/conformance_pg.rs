//! Runs the backend conformance suite against [`PgStore`] on a throwaway
//! PostgreSQL cluster the test starts itself (see `pg_cluster`), and checks
//! what only a networked, shared backend must do: refuse a newer layout,
//! survive a broken connection, let two stores share one database.
//! Budget: one cluster per test, each test under 30 s.

mod pg_cluster;

use regmesh_store::{conformance, PgStore, Store, StoreError, WriteBatch};

fn open(url: &str) -> PgStore {
    PgStore::open(url, 2).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

#[test]
fn postgres_backend_conforms() {
    let Some(pg) = pg_cluster::start_or_skip("conform") else {
        return;
    };
    let n = std::cell::Cell::new(0);
    conformance::run(&|| {
        n.set(n.get() + 1);
        Box::new(open(&pg.create_db(&format!("s{}", n.get())))) as Box<dyn Store>
    });
    let url = pg.create_db("durable");
    conformance::run_durable(pg.dir(), &|_| Box::new(open(&url)) as Box<dyn Store>);
    assert_eq!(open(&url).backend(), "postgres");
}

#[test]
fn postgres_layout_pool_and_reconnect() {
    let Some(pg) = pg_cluster::start_or_skip("layout") else {
        return;
    };

    // A newer layout is refused and left as it was.
    let url = pg.create_db("newer");
    let s = open(&url);
    assert_eq!(s.meta("store.format").unwrap().as_deref(), Some(&b"1"[..]));
    s.apply(&WriteBatch {
        meta: vec![("store.format".into(), b"99".to_vec())],
        ..Default::default()
    })
    .unwrap();
    drop(s);
    let e = PgStore::open(&url, 1).err().expect("must refuse a newer layout");
    assert!(
        matches!(
            e,
            StoreError::NewerFormat {
                what: "store layout",
                found: 99,
                supported: 1
            }
        ),
        "{e}"
    );
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let v: Vec<u8> = c
        .query_one("SELECT bytes FROM regmesh_meta WHERE key = 'store.format'", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, b"99", "refusing wrote something");

    // Bad settings are refused before connecting.
    assert!(PgStore::open(&url, 0).is_err(), "pool 0 accepted");
    assert!(PgStore::open("not a url", 1).is_err(), "a bad url accepted");

    // Two stores (two processes' worth) on one database see each other's
    // writes, from many threads at once, with at most `pool` connections each.
    let shared = pg.create_db("shared");
    let (a, b) = (std::sync::Arc::new(open(&shared)), std::sync::Arc::new(open(&shared)));
    std::thread::scope(|s| {
        for t in 0..8 {
            let st = if t % 2 == 0 { a.clone() } else { b.clone() };
            s.spawn(move || {
                for i in 0..25 {
                    let mut w = WriteBatch::default();
                    w.put("agent", format!("t{t}-{i}"), vec![t as u8]);
                    st.apply(&w).unwrap();
                }
            });
        }
    });
    let mut n = 0;
    b.scan(&mut |_, _, _| {
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 200, "writes of one store not all seen by the other");
    let conns: i64 = c
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = 'shared'", &[])
        .unwrap()
        .get(0);
    assert!(conns <= 4, "{conns} connections for two stores of pool 2");

    // A connection the server drops is replaced on a later request.
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shared'",
        &[],
    )
    .unwrap();
    // Each of the pool's connections fails at most the one request that
    // finds it dead (nothing applied: `Backend`), then is replaced; which
    // worker takes a request is not ours to choose, so a few requests
    // bring both back.
    let mut ok = false;
    for _ in 0..4 {
        if a.get("agent", "t0-0").is_ok_and(|v| v == Some(vec![0])) {
            ok = true;
            break;
        }
    }
    assert!(ok, "the store did not reconnect after its connections were terminated");

    // A scan longer than one page visits everything once, in order.
    let mut w = WriteBatch::default();
    for i in 0..700 {
        w.put("page", format!("{i:04}"), vec![1]);
    }
    let mut applied = a.apply(&w);
    for _ in 0..2 {
        match applied {
            Err(StoreError::Backend(_)) => applied = a.apply(&w),
            _ => break,
        }
    }
    applied.expect("a write goes through once the dead connections are replaced");
    let mut seen = Vec::new();
    a.scan(&mut |k, i, _| {
        if k == "page" {
            seen.push(i.to_string());
        }
        true
    })
    .unwrap();
    let want: Vec<String> = (0..700).map(|i| format!("{i:04}")).collect();
    assert_eq!(seen, want, "paged scan");
}
