//! A record id is exactly its raw path segment (issue 11, item 8): what a
//! client writes with `%3A` is stored, listed and read back with `%3A`, the
//! decoded spelling is another id, and `.`/`..` and malformed escapes are
//! refused. Requests are written byte for byte on a TCP socket, as curl
//! with `--path-as-is` sends them.

mod common;

use common::{agent, start};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request on a fresh connection, exactly as written; (status, body).
async fn raw(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn an_escaped_id_is_stored_and_read_as_written() {
    let c = start().await;
    let addr = c.running.as_ref().unwrap().addr;
    let body = agent("2001:db8::1").to_string();
    let id = "did:web:example.com%3A8080:a1";
    let (status, text) = raw(addr, "PUT", &format!("/v1/agents/{id}"), Some(&body)).await;
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["id"], id, "stored as written, not decoded");
    let (status, text) = raw(addr, "GET", &format!("/v1/agents/{id}"), None).await;
    assert_eq!(status, 200, "{text}");
    // The decoded spelling is a different DID, which does not exist.
    let (status, _) = raw(addr, "GET", "/v1/agents/did:web:example.com:8080:a1", None).await;
    assert_eq!(status, 404);
    let (status, _) = raw(addr, "POST", &format!("/v1/agents/{id}/heartbeat"), None).await;
    assert_eq!(status, 200);
    let (_, list) = raw(addr, "GET", "/v1/agents", None).await;
    assert!(list.contains(&format!("\"id\":\"{id}\"")), "{list}");
    assert_eq!(c.center().get("agent", id).unwrap().unwrap().id, id);
    assert!(c
        .center()
        .get("agent", "did:web:example.com:8080:a1")
        .unwrap()
        .is_none());
    let (status, _) = raw(addr, "DELETE", &format!("/v1/agents/{id}"), None).await;
    assert_eq!(status, 204);
    c.stop().await;
}

#[tokio::test]
async fn dot_segments_and_bad_escapes_are_refused_and_change_nothing() {
    let c = start().await;
    let addr = c.running.as_ref().unwrap().addr;
    let body = agent("2001:db8::1").to_string();
    for id in [".", "..", "bad%", "bad%zz", "a%3a", "%41gent"] {
        let (status, text) = raw(addr, "PUT", &format!("/v1/agents/{id}"), Some(&body)).await;
        assert_eq!(status, 400, "{id}: {text}");
        assert!(text.contains("invalid_id"), "{id}: {text}");
    }
    let (_, list) = raw(addr, "GET", "/v1/agents", None).await;
    assert!(list.starts_with(r#"{"items":[]"#), "{list}");
    assert_eq!(c.center().head(), 0, "nothing was written");
    c.stop().await;
}
