//! One canonical form of a record id from curl, the CLI and the mesh (issue
//! 11, item 8): the id is its raw path segment, `%3A` included. A two-center
//! mesh of `regmesh` processes; budget about 5 s.

use std::process::Command;
use std::time::{Duration, Instant};

mod peer_harness;

use peer_harness::{init, spawn as serve, BIN};

const ID: &str = "did:web:example.com%3A8080:a1";

fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["agent", "--server", url])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// curl sending the path exactly as written; (status, body).
fn curl(method: &str, url: &str, body: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--path-as-is", "-w", "\n%{http_code}", "-X", method]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", b]);
    }
    let out = cmd.arg(url).output().expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[test]
fn curl_the_cli_and_the_mesh_name_an_escaped_id_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    init(d, 2, "full");
    let (_p1, c1) = serve(d, "c1");
    let (_p2, c2) = serve(d, "c2");
    let t0 = Instant::now();
    while !curl("GET", &format!("{c2}/v1/peers"), None)
        .1
        .contains(r#""state":"active""#)
    {
        assert!(t0.elapsed() < Duration::from_secs(15), "mesh never became active");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The CLI writes the id; curl reads it back under the same spelling.
    let (ok, text) = cli(&c1, &["put", ID, "--address", "2001:db8::1"]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("\"id\": \"{ID}\"")), "{text}");
    let (code, body) = curl("GET", &format!("{c1}/v1/agents/{ID}"), None);
    assert_eq!(code, "200", "curl GET of what the CLI wrote: {body}");
    let (code, _) = curl("GET", &format!("{c1}/v1/agents/did:web:example.com:8080:a1"), None);
    assert_eq!(code, "404", "the decoded spelling is another DID");

    // The mesh carries it unchanged.
    let t0 = Instant::now();
    loop {
        let (code, body) = curl("GET", &format!("{c2}/v1/agents/{ID}"), None);
        if code == "200" {
            assert!(body.contains(&format!("\"id\":\"{ID}\"")), "{body}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "c2 never got {ID}: {code}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, text) = cli(&c2, &["get", ID]);
    assert!(ok, "{text}");

    // curl writes one; the CLI reads it under the same spelling.
    let body = r#"{"addresses":["2001:db8::2"]}"#;
    let (code, text) = curl("PUT", &format!("{c1}/v1/agents/did:web:example.org%3A8443"), Some(body));
    assert_eq!(code, "201", "{text}");
    let (ok, text) = cli(&c1, &["get", "did:web:example.org%3A8443"]);
    assert!(ok, "{text}");

    // Dot segments are refused by the center and by the CLI.
    let (code, text) = curl("PUT", &format!("{c1}/v1/agents/.."), Some(body));
    assert_eq!(code, "400", "{text}");
    assert!(text.contains("invalid_id"), "{text}");
    let (ok, text) = cli(&c1, &["put", "..", "--address", "2001:db8::3"]);
    assert!(!ok && text.contains("not a valid record id"), "{text}");
}
