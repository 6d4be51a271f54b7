//! `regmesh demo` can be run again (issue 11, "Also"): a second run reuses the
//! mesh its folder holds, `--fresh` starts over with new keys, and a folder
//! that is not a demo mesh is refused without deleting anything. Budget: three
//! demo runs, about 10 s.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_regmesh");

fn free_base() -> u16 {
    let seed = std::process::id() as usize;
    for k in 0..500 {
        let base = 20_000 + ((seed * 19 + k * 131) % 1200) * 10 + 3;
        if [0, 1, 10, 11, 20, 21]
            .iter()
            .all(|d| std::net::TcpListener::bind(("127.0.0.1", (base + d) as u16)).is_ok())
        {
            return base as u16;
        }
    }
    panic!("no free ports");
}

/// Runs the demo in `dir`; (success, stdout and stderr).
fn demo(dir: &Path, base: u16, extra: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["demo", "--base-port", &base.to_string(), "--dir"])
        .arg(dir)
        .args(extra)
        .env("REGMESH_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn demo_runs_twice_and_fresh_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let base = free_base();
    let (ok, text) = demo(&dir, base, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("every agent arrived at every center"), "{text}");
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();

    // Again: the same mesh, keys and data.
    let (ok, text) = demo(&dir, base, &[]);
    assert!(ok, "second run: {text}");
    assert!(text.contains("reusing the demo mesh"), "{text}");
    assert_eq!(text.matches("holds 6 agents").count(), 3, "{text}");
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca, "the keys were kept");

    // --fresh: new keys, and the mesh works.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let (ok, text) = demo(&dir, base, &["--fresh"]);
    assert!(ok, "fresh run: {text}");
    assert!(text.contains("every agent arrived at every center"), "{text}");
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), ca, "new keys");
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine",
        "only the demo's files go"
    );

    // A folder with a c1.toml but no whole demo mesh is refused, untouched.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("c1.toml"), "id = \"c1\"\n").unwrap();
    let (ok, text) = demo(&other, base, &[]);
    assert!(!ok && text.contains("not a demo mesh"), "{text}");
    assert!(other.join("c1.toml").exists());
}
