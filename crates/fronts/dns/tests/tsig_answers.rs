//! The agent refuses an UPDATE answer that is not signed with its primary's
//! TSIG key over its own request (RFC 8945 §5.3.2). The server here stands
//! for an impostor on the path to the primary: it answers NS reads signed
//! with the right key, and UPDATEs unsigned, with another secret, or with a
//! MAC over some other request. Knot's correctly signed answers are
//! checked by `crates/bin/tests/dns.rs`.
//!
//! Budget: one loopback listener per case, four cases, well under 1 s.

use regmesh_front_dns::config::Server;
use regmesh_front_dns::net::NetError;
use regmesh_front_dns::tsig::{self, TsigError, TsigKey};
use regmesh_front_dns::update::{self, UpdateError};
use regmesh_front_dns::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW_S: u64 = 1_800_000_000;

#[derive(Clone, Copy, Debug)]
enum UpdateAnswer {
    Signed,
    Unsigned,
    OtherSecret,
    OverOtherRequest,
}

fn key(secret: u8) -> TsigKey {
    TsigKey {
        name: "p1".into(),
        secret: vec![secret; 32],
    }
}

/// Our requests' MAC: their TSIG RDATA ends with the 32-byte MAC, the
/// original id, the error and an empty other-data (6 bytes).
fn request_mac(m: &[u8]) -> Vec<u8> {
    m[m.len() - 6 - 32..m.len() - 6].to_vec()
}

/// The question section of `m` (one question).
fn question(m: &[u8]) -> Vec<u8> {
    let end = wire::read_name(m, 12).unwrap().1 + 4;
    m[12..end].to_vec()
}

fn answer(req: &[u8], ns: &[&str], how: UpdateAnswer) -> Vec<u8> {
    let mut a = req[..2].to_vec();
    a.extend_from_slice(&[0x80 | (req[2] & 0x78), 0, 0, 1, 0, ns.len() as u8, 0, 0, 0, 0]);
    a.extend_from_slice(&question(req));
    for n in ns {
        let mut rdata = Vec::new();
        wire::name_wire(n, &mut rdata);
        a.extend_from_slice(&[0xC0, 12, 0, 2, 0, 1, 0, 0, 0, 60]);
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(&rdata);
    }
    let mac = request_mac(req);
    match how {
        UpdateAnswer::Signed => drop(tsig::sign(&mut a, &key(1), NOW_S, Some(&mac))),
        UpdateAnswer::Unsigned => {}
        UpdateAnswer::OtherSecret => drop(tsig::sign(&mut a, &key(2), NOW_S, Some(&mac))),
        UpdateAnswer::OverOtherRequest => drop(tsig::sign(&mut a, &key(1), NOW_S, Some(&[7; 32]))),
    }
    a
}

/// Serves NS reads (signed, the set `served`) and UPDATEs (answered `how`)
/// until the test ends.
async fn server(how: UpdateAnswer) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut updated = false;
        while let Ok((mut s, _)) = l.accept().await {
            let len = s.read_u16().await.unwrap() as usize;
            let mut req = vec![0; len];
            s.read_exact(&mut req).await.unwrap();
            let is_update = (req[2] >> 3) & 0xF == 5;
            let a = if is_update {
                updated = true;
                answer(&req, &[], how)
            } else if updated {
                answer(&req, &["ns1.p1.lab.", "ns2.p1.lab."], UpdateAnswer::Signed)
            } else {
                answer(&req, &["ns.lab."], UpdateAnswer::Signed)
            };
            s.write_all(&(a.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&a).await.unwrap();
        }
    });
    addr
}

async fn apply(how: UpdateAnswer) -> Result<(update::Served, bool), UpdateError> {
    let server = Server {
        addr: server(how).await,
        key: key(1),
    };
    let want = update::Want {
        owner: "example.lab.".into(),
        rtype: wire::TYPE_NS,
        rdata: ["ns1.p1.lab.", "ns2.p1.lab."]
            .iter()
            .map(|n| update::ns_rdata(n))
            .collect(),
    };
    update::apply(&server, "example.lab.", &[want], 60, NOW_S).await
}

fn tsig_error(r: Result<(update::Served, bool), UpdateError>) -> TsigError {
    match r {
        Err(UpdateError::Net(NetError::Tsig(e, _))) => e,
        other => panic!("want a TSIG refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_update_answer_must_carry_the_primarys_tsig_over_our_request() {
    let (ns, sent) = apply(UpdateAnswer::Signed).await.unwrap();
    assert!(sent);
    assert_eq!(ns[0].len(), 2);

    let e = tsig_error(apply(UpdateAnswer::Unsigned).await);
    assert_eq!(e, TsigError::Unsigned);
    assert!(e.to_string().contains("no TSIG"), "{e}");
    assert_eq!(tsig_error(apply(UpdateAnswer::OtherSecret).await), TsigError::BadMac);
    assert_eq!(
        tsig_error(apply(UpdateAnswer::OverOtherRequest).await),
        TsigError::BadMac
    );
}
