//! The `regmesh` binary as an operator runs it: serve, CLI, and SIGKILL in the
//! middle of a write load, then restart and read back every acknowledged write.

use regmesh_node::client::Client;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_regmesh");

/// Starts `regmesh serve` on a free loopback port; returns the child and its
/// API URL once it says it is listening.
fn serve(data: &Path, id: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--id", id, "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("REGMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start regmesh serve");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("read listen line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["agent", "--server", url])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn cli_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(dir.path(), "cli1");
    let (ok, out, err) = cli(
        &url,
        &[
            "put",
            "did:web:example.com:a1",
            "--address",
            "2001:db8::1",
            "--endpoint",
            "a2a=https://a1.example.com/a2a",
            "--capability",
            "translate",
            "--lease",
            "60",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["origin"], "cli1");
    assert_eq!(v["lease_s"], 60);
    let (ok, out, _) = cli(&url, &["get", "did:web:example.com:a1"]);
    assert!(ok && out.contains("2001:db8::1"));
    let (ok, out, _) = cli(&url, &["beat", "did:web:example.com:a1"]);
    assert!(ok && out.contains("\"online\""));
    let (ok, out, _) = cli(&url, &["ls", "--capability", "translate", "--all"]);
    assert!(ok && out.contains("did:web:example.com:a1"));
    let (ok, _, err) = cli(&url, &["put", "bad", "--address", "fe80::1"]);
    assert!(!ok && err.contains("400") && err.contains("link-local"), "{err}");
    let (ok, _, err) = cli(&url, &["rm", "did:web:example.com:a1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&url, &["get", "did:web:example.com:a1"]);
    assert!(!ok && err.contains("404"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn config_show_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "id = \"from-file\"\n[api]\nlisten = \"127.0.0.1:7999\"\n[[api.tokens]]\nname = \"ops\"\ntoken = \"0123456789abcdef0123\"\nscopes = [\"admin\"]\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "show", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:7001"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("id = \"from-file\""), "{text}");
    assert!(
        text.contains("listen = \"127.0.0.1:7001\""),
        "flag overrides file: {text}"
    );
    assert!(text.contains("<redacted>") && !text.contains("0123456789abcdef0123"));
    assert!(text.contains("retention_s"), "defaults are shown: {text}");

    std::fs::write(&cfg, "id = \"x\"\nbogus = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "show", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));

    let out = Command::new(BIN)
        .args(["serve", "--id", "x", "--listen", "0.0.0.0:7001"])
        .args(["--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "public listen without tokens must be refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));

    for args in [vec!["--help"], vec!["serve", "--help"], vec!["agent", "put", "--help"]] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(dir.path(), "crash1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&url, None).unwrap();

    // 8 writers put (and sometimes delete) agents as fast as they can. Each
    // reports an op before sending it and again once it is acknowledged.
    // After 400 acknowledgements the center is SIGKILLed mid-load; then every
    // report is drained (writers stop on the first failed call).
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Ev {
        Sent,
        Acked,
    }
    let reports: Vec<(String, bool, Ev)> = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool, Ev)>();
        for w in 0..8 {
            let client = client.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = client.connect().await else { return };
                for i in 0.. {
                    let id = format!("w{w}-{i}");
                    let body = serde_json::json!({"addresses": [format!("2001:db8::{w}:{i}")], "capabilities": [{"name": "crash-test"}]});
                    let _ = tx.send((id.clone(), true, Ev::Sent));
                    match conn.request(hyper::Method::PUT, &format!("/v1/agents/{id}"), Some(&body)).await {
                        Ok(r) if r.status.is_success() => {
                            let _ = tx.send((id.clone(), true, Ev::Acked));
                        }
                        _ => return,
                    }
                    if i % 5 == 4 {
                        let _ = tx.send((id.clone(), false, Ev::Sent));
                        match conn.request(hyper::Method::DELETE, &format!("/v1/agents/{id}"), None).await {
                            Ok(r) if r.status.as_u16() == 204 => {
                                let _ = tx.send((id, false, Ev::Acked));
                            }
                            _ => return,
                        }
                    }
                }
            });
        }
        drop(tx);
        let mut reports = Vec::new();
        let mut acks = 0;
        while let Some(r) = rx.recv().await {
            acks += (r.2 == Ev::Acked) as usize;
            reports.push(r);
            if acks == 400 {
                break;
            }
        }
        // SIGKILL: no shutdown path runs.
        child.kill().unwrap();
        child.wait().unwrap();
        while let Some(r) = rx.recv().await {
            reports.push(r);
        }
        reports
    });
    drop(rt);
    // Per id: the last acknowledged state, unless an op was still in flight.
    let mut last: std::collections::HashMap<String, (Option<bool>, bool)> = std::collections::HashMap::new();
    for (id, live, ev) in reports {
        let e = last.entry(id).or_insert((None, false));
        match ev {
            Ev::Sent => e.1 = true,
            Ev::Acked => *e = (Some(live), false),
        }
    }
    let acked: Vec<(String, bool)> = last
        .into_iter()
        .filter_map(|(id, (state, in_flight))| (!in_flight).then_some((id, state?)))
        .collect();
    assert!(acked.len() >= 300, "too few settled ids to judge: {}", acked.len());

    let t0 = Instant::now();
    let (mut child, url) = serve(dir.path(), "crash1");
    assert!(t0.elapsed() < Duration::from_secs(60));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&url, None).unwrap();
    rt.block_on(async {
        let mut conn = client.connect().await.unwrap();
        let mut state = std::collections::HashMap::new();
        for (id, live) in &acked {
            state.insert(id.clone(), *live);
        }
        for (id, live) in state {
            let r = conn
                .request(hyper::Method::GET, &format!("/v1/agents/{id}"), None)
                .await
                .unwrap();
            let want = if live { 200 } else { 404 };
            assert_eq!(
                r.status.as_u16(),
                want,
                "{id}: acknowledged {} was lost",
                if live { "put" } else { "delete" }
            );
        }
        // The restarted center keeps working and numbering from where it was.
        let r = conn
            .request(
                hyper::Method::PUT,
                "/v1/agents/after-restart",
                Some(&serde_json::json!({"addresses": ["::1"]})),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201);
        let seq = r.json()["seq"].as_u64().unwrap();
        assert!(seq > 400, "seq went backwards after restart: {seq}");
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn import_checks_every_line_first_then_loads_a_stopped_center() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("c1.toml"), "id = \"c1\"\ndata_dir = \"data\"\n").unwrap();
    std::fs::write(
        d.join("bad.jsonl"),
        "{\"id\":\"a1\",\"addresses\":[\"2001:db8::1\"]}\n{\"id\":\"a2\",\"addresses\":[\"fe80::1\"]}\n",
    )
    .unwrap();
    let lines: String = (0..500)
        .map(|i| {
            format!(
                "{{\"id\":\"b{i}\",\"addresses\":[\"2001:db8::{i:x}\"],\"capabilities\":[{{\"name\":\"c{}\"}}]}}\n",
                i % 5
            )
        })
        .collect();
    std::fs::write(d.join("ok.jsonl"), lines).unwrap();
    let import = |f: &str| {
        Command::new(BIN)
            .args(["import", "--config"])
            .arg(d.join("c1.toml"))
            .arg(d.join(f))
            .output()
            .unwrap()
    };
    let out = import("bad.jsonl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("link-local"), "{err}");
    let out = import("ok.jsonl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (mut child, url) = serve(&d.join("data"), "c1");
    let (ok, _, _) = cli(&url, &["get", "a1"]);
    assert!(!ok, "nothing of the bad file was written");
    let (ok, out, _) = cli(&url, &["get", "b499"]);
    assert!(ok, "{out}");
    let (ok, out, _) = cli(&url, &["ls", "--capability", "c3", "--all"]);
    assert!(ok);
    assert_eq!(out.matches("\"origin\": \"c1\"").count(), 100, "{out}");
    let _ = child.kill();
    let _ = child.wait();
}
