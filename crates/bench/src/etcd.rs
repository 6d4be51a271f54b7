//! A minimal etcd v3 client for the side-by-side benchmark: gRPC over
//! HTTP/2 (cleartext, as etcd serves on loopback by default), with the few
//! protobuf messages it needs encoded by hand. This is the protocol etcd's
//! own clients speak, so etcd is measured on its native path, not through
//! the JSON gateway.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::Instant;

type Body = BoxBody<Bytes, Infallible>;

// ---- protobuf, by hand: varints and length-delimited fields only ----

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn f_bytes(b: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(b, (field << 3) | 2);
    varint(b, data.len() as u64);
    b.extend_from_slice(data);
}

fn f_varint(b: &mut Vec<u8>, field: u64, v: u64) {
    varint(b, field << 3);
    varint(b, v);
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn read_varint(b: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().context("truncated varint")?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

/// The fields of one message, in order.
fn fields(mut b: &[u8]) -> Result<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = read_varint(&mut b)?;
        let f = match tag & 7 {
            0 => Field::Varint(read_varint(&mut b)?),
            2 => {
                let n = read_varint(&mut b)? as usize;
                if n > b.len() {
                    bail!("truncated field");
                }
                let (d, rest) = b.split_at(n);
                b = rest;
                Field::Bytes(d)
            }
            1 => {
                b = b.get(8..).context("truncated fixed64")?;
                continue;
            }
            5 => {
                b = b.get(4..).context("truncated fixed32")?;
                continue;
            }
            w => bail!("unsupported wire type {w}"),
        };
        out.push((tag >> 3, f));
    }
    Ok(out)
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut e = prefix.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0]
}

fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(5 + msg.len());
    f.push(0);
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    Bytes::from(f)
}

/// One HTTP/2 connection to one etcd member.
pub struct Etcd {
    send: http2::SendRequest<Body>,
    base: String,
}

impl Etcd {
    pub async fn connect(addr: &str) -> Result<Etcd> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Etcd {
            send,
            base: format!("http://{addr}"),
        })
    }

    fn request(&self, method: &str, body: Body) -> Result<hyper::Request<Body>> {
        Ok(hyper::Request::post(format!("{}/{method}", self.base))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)?)
    }

    async fn unary(&mut self, method: &str, msg: &[u8]) -> Result<Bytes> {
        let req = self.request(method, Full::new(grpc_frame(msg)).boxed())?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status_in_headers = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let collected = resp.into_body().collect().await?;
        let status = status_in_headers.or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        });
        if status.as_deref() != Some("0") {
            bail!("{method}: grpc-status {status:?}");
        }
        let b = collected.to_bytes();
        if b.len() < 5 {
            bail!("{method}: empty answer");
        }
        Ok(b.slice(5..))
    }

    /// Put; returns the revision of the write.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<u64> {
        let mut m = Vec::with_capacity(key.len() + value.len() + 8);
        f_bytes(&mut m, 1, key);
        f_bytes(&mut m, 2, value);
        let resp = self.unary("etcdserverpb.KV/Put", &m).await?;
        header_revision(&resp)
    }

    /// Range with etcd's default (linearizable) consistency unless
    /// `serializable`. Returns (values, count).
    async fn range(
        &mut self,
        key: &[u8],
        end: Option<&[u8]>,
        limit: u64,
        serializable: bool,
        count_only: bool,
    ) -> Result<(Vec<Vec<u8>>, u64)> {
        let mut m = Vec::new();
        f_bytes(&mut m, 1, key);
        if let Some(e) = end {
            f_bytes(&mut m, 2, e);
        }
        if limit > 0 {
            f_varint(&mut m, 3, limit);
        }
        if serializable {
            f_varint(&mut m, 7, 1);
        }
        if count_only {
            f_varint(&mut m, 9, 1);
        }
        let resp = self.unary("etcdserverpb.KV/Range", &m).await?;
        let mut values = Vec::new();
        let mut count = 0;
        for (n, f) in fields(&resp)? {
            match (n, f) {
                (2, Field::Bytes(kv)) => {
                    for (kn, kf) in fields(kv)? {
                        if let (5, Field::Bytes(v)) = (kn, kf) {
                            values.push(v.to_vec());
                        }
                    }
                }
                (4, Field::Varint(c)) => count = c,
                _ => {}
            }
        }
        Ok((values, count))
    }

    /// The value of `key` (linearizable read, etcd's default).
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.range(key, None, 0, false, false).await?.0.pop())
    }

    /// Up to `limit` values under `prefix` (linearizable).
    pub async fn prefix(&mut self, prefix: &[u8], limit: u64) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .range(prefix, Some(&prefix_end(prefix)), limit, false, false)
            .await?
            .0)
    }

    /// How many keys start with `prefix`, as this member holds them now
    /// (serializable: answered locally, without the leader).
    pub async fn count_local(&mut self, prefix: &[u8]) -> Result<u64> {
        Ok(self.range(prefix, Some(&prefix_end(prefix)), 0, true, true).await?.1)
    }

    /// Watches every key under `prefix`; sends each event's key and arrival
    /// time. Returns once the watch is created; events flow from a task.
    pub async fn watch(
        mut self,
        prefix: &[u8],
        tx: tokio::sync::mpsc::UnboundedSender<(Vec<u8>, Instant)>,
    ) -> Result<()> {
        let mut create = Vec::new();
        f_bytes(&mut create, 1, prefix);
        f_bytes(&mut create, 2, &prefix_end(prefix));
        let mut m = Vec::new();
        f_bytes(&mut m, 1, &create);
        let first = grpc_frame(&m);
        // The request stream stays open: one create message, then nothing.
        let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(Frame::data(first)) })
            .chain(futures_util::stream::pending());
        let req = self.request("etcdserverpb.Watch/Watch", BodyExt::boxed(StreamBody::new(stream)))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let mut body = resp.into_body();
        let (created_tx, created_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _keep = self.send;
            let mut created = Some(created_tx);
            let mut buf: Vec<u8> = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Some(d) = frame.data_ref() else { continue };
                let now = Instant::now();
                buf.extend_from_slice(d);
                while buf.len() >= 5 {
                    let n = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                    if buf.len() < 5 + n {
                        break;
                    }
                    let msg: Vec<u8> = buf.drain(..5 + n).skip(5).collect();
                    let Ok(fs) = fields(&msg) else { return };
                    for (num, f) in fs {
                        match (num, f) {
                            (3, Field::Varint(1)) => {
                                if let Some(c) = created.take() {
                                    let _ = c.send(());
                                }
                            }
                            (11, Field::Bytes(ev)) => {
                                let key = fields(ev).ok().and_then(|efs| {
                                    efs.into_iter().find_map(|(en, ef)| match (en, ef) {
                                        (2, Field::Bytes(kv)) => fields(kv).ok().and_then(|kfs| {
                                            kfs.into_iter().find_map(|(kn, kf)| match (kn, kf) {
                                                (1, Field::Bytes(k)) => Some(k.to_vec()),
                                                _ => None,
                                            })
                                        }),
                                        _ => None,
                                    })
                                });
                                if let Some(k) = key {
                                    let _ = tx.send((k, now));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        });
        created_rx.await.context("watch was not created")?;
        Ok(())
    }
}

fn header_revision(resp: &[u8]) -> Result<u64> {
    for (n, f) in fields(resp)? {
        if let (1, Field::Bytes(h)) = (n, f) {
            for (hn, hf) in fields(h)? {
                if let (3, Field::Varint(r)) = (hn, hf) {
                    return Ok(r);
                }
            }
        }
    }
    bail!("answer has no revision")
}
