//! Helpers shared by the node's HTTP tests: start a real center on a loopback
//! port in a temporary directory, and talk to it.
#![allow(dead_code)]

use hyper::Method;
use regmesh_node::client::{Client, Reply};
use regmesh_node::{Config, Running};
use serde_json::Value;

pub struct TestCenter {
    pub running: Option<Running>,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestCenter {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_test("c1", dir.path());
    f(&mut cfg);
    let running = regmesh_node::NodeBuilder::new(cfg.clone())
        .front(regmesh_front_agent::AgentFront::new())
        .start()
        .await
        .unwrap();
    let client = Client::new(
        &format!("http://{}", running.addr),
        cfg.api.tokens.first().map(|t| t.token.clone()),
    )
    .unwrap();
    TestCenter {
        running: Some(running),
        client,
        dir,
    }
}

pub async fn start() -> TestCenter {
    start_with(|_| {}).await
}

impl TestCenter {
    pub async fn req(&self, m: Method, path: &str, body: Option<Value>) -> Reply {
        self.client.request(m, path, body.as_ref()).await.unwrap()
    }
    pub async fn get(&self, path: &str) -> Reply {
        self.req(Method::GET, path, None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.req(Method::PUT, path, Some(body)).await
    }
    /// A PUT with an exact body and content type.
    pub async fn put_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let mut c = self.client.connect().await.unwrap();
        let req = c
            .builder(Method::PUT, path)
            .header("content-type", content_type)
            .body(http_body_util::Full::new(body.into()))
            .unwrap();
        c.send_raw(req).await.unwrap()
    }
    pub fn center(&self) -> &std::sync::Arc<regmesh_node::Center> {
        &self.running.as_ref().unwrap().center
    }
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.running.take().unwrap().shutdown().await;
        self.dir
    }
}

pub fn agent(addr: &str) -> Value {
    serde_json::json!({
        "addresses": [addr],
        "endpoints": [{"url": "https://agents.example.com/a2a", "protocol": "a2a"}],
        "status": "online",
        "capabilities": [{"name": "translate", "tags": ["en-fr"]}]
    })
}
