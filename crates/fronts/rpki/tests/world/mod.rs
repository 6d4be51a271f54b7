//! A synthetic RPKI built in-process with the `rpki` crate's `ca` and
//! `softkeys` features: a trust anchor, CAs in several "regions" spread
//! over several RRDP repositories, ROAs over IPv4 and IPv6 with max
//! lengths; each repository served over loopback HTTPS by its own listener
//! (its own origin), with optional latency and bandwidth limits.
//!
//! Test support only: every key is made fresh, nothing is written outside
//! the temp folder the caller gives.
#![allow(dead_code)]

mod serve;

pub use serve::*;

use bytes::Bytes;
use rpki::crypto::softsigner::{KeyId, SoftSigner};
use rpki::crypto::{PublicKey, PublicKeyFormat, Signer};
use rpki::repository::aspa::AspaBuilder;
use rpki::repository::cert::{KeyUsage, Overclaim, TbsCert};
use rpki::repository::crl::{CrlEntry, TbsCertList};
use rpki::repository::manifest::{FileAndHash, ManifestContent};
use rpki::repository::resources::{Asn, Prefix};
use rpki::repository::roa::RoaBuilder;
use rpki::repository::sigobj::SignedObjectBuilder;
use rpki::repository::x509::{Serial, Time, Validity};
use rpki::rrdp::{DeltaElement, DeltaInfo, Hash, PublishElement, UpdateElement, UriAndHash, WithdrawElement};
use rpki::uri;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A ROA: origin AS and (prefix, length, max length) entries.
#[derive(Clone, Debug)]
pub struct RoaSpec {
    pub asn: u32,
    pub prefixes: Vec<(IpAddr, u8, Option<u8>)>,
}

/// A CA: its resources, where it publishes, its parent (None: under the TA).
#[derive(Clone, Debug)]
pub struct CaSpec {
    pub name: String,
    pub repo: usize,
    pub parent: Option<usize>,
    pub v4: Vec<(IpAddr, u8)>,
    pub v6: Vec<(IpAddr, u8)>,
    pub asns: (u32, u32),
    pub roas: Vec<RoaSpec>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The standard lab: 3 repositories; under the TA (repo 0) CAs "ripe"
/// (repo 1), "apnic" (repo 2) and "arin" (repo 1); "apnic" has a member CA
/// "apnic-member" in repo 2. 12 ROA prefixes, IPv4 and IPv6, with and
/// without max lengths.
pub fn lab_cas() -> Vec<CaSpec> {
    vec![
        CaSpec {
            name: "ripe".into(),
            repo: 1,
            parent: None,
            v4: vec![(ip("10.0.0.0"), 8)],
            v6: vec![(ip("2001:db8::"), 32)],
            asns: (64496, 64511),
            roas: vec![
                RoaSpec {
                    asn: 64496,
                    prefixes: vec![(ip("10.1.0.0"), 16, Some(24)), (ip("10.2.0.0"), 16, None)],
                },
                RoaSpec {
                    asn: 64497,
                    prefixes: vec![(ip("2001:db8:1::"), 48, Some(64)), (ip("10.3.0.0"), 24, None)],
                },
            ],
        },
        CaSpec {
            name: "apnic".into(),
            repo: 2,
            parent: None,
            v4: vec![(ip("172.16.0.0"), 12)],
            v6: vec![(ip("2001:db9::"), 32)],
            asns: (65000, 65100),
            roas: vec![RoaSpec {
                asn: 65001,
                prefixes: vec![(ip("172.16.0.0"), 16, Some(20)), (ip("2001:db9::"), 32, Some(48))],
            }],
        },
        CaSpec {
            name: "apnic-member".into(),
            repo: 2,
            parent: Some(1),
            v4: vec![(ip("172.17.0.0"), 16)],
            v6: vec![(ip("2001:db9:8000::"), 33)],
            asns: (65050, 65059),
            roas: vec![
                RoaSpec {
                    asn: 65050,
                    prefixes: vec![(ip("172.17.1.0"), 24, None), (ip("2001:db9:8000::"), 40, Some(56))],
                },
                RoaSpec {
                    asn: 65051,
                    prefixes: vec![(ip("172.17.2.0"), 23, Some(24))],
                },
            ],
        },
        CaSpec {
            name: "arin".into(),
            repo: 1,
            parent: None,
            v4: vec![(ip("192.0.2.0"), 24), (ip("198.51.100.0"), 24)],
            v6: vec![(ip("2001:dba::"), 32)],
            asns: (64512, 64520),
            roas: vec![
                RoaSpec {
                    asn: 64512,
                    prefixes: vec![(ip("192.0.2.0"), 24, None), (ip("198.51.100.0"), 24, Some(28))],
                },
                RoaSpec {
                    asn: 0,
                    prefixes: vec![(ip("2001:dba::"), 32, None)],
                },
            ],
        },
    ]
}

/// The VRPs [`lab_cas`] should validate to, as (asn, prefix/len, max).
pub fn lab_expected() -> Vec<(u32, String, u8)> {
    let mut v = Vec::new();
    for ca in lab_cas() {
        for r in ca.roas {
            for (a, l, m) in r.prefixes {
                v.push((r.asn, format!("{a}/{l}"), m.unwrap_or(l)));
            }
        }
    }
    v.sort();
    v
}

/// One CA as built: key, certificate, URIs.
pub struct BuiltCa {
    pub key: KeyId,
    pub pubkey: PublicKey,
    pub cert_der: Bytes,
    pub cert_uri: uri::Rsync,
    pub repo_uri: uri::Rsync,
    pub repo: usize,
    pub name: String,
    /// Serials of certificates this CA revoked (on its CRL).
    pub revoked: Vec<u64>,
}

/// The whole world: signer, CAs, the objects of each repository.
pub struct World {
    pub signer: SoftSigner,
    /// The repositories' host in every URI (`localhost` unless built on
    /// another).
    pub host: String,
    pub ports: Vec<u16>,
    pub ta: BuiltCa,
    pub cas: Vec<BuiltCa>,
    pub specs: Vec<CaSpec>,
    pub serial: AtomicU64,
    /// Per repository: rsync URI → object.
    pub objects: Vec<BTreeMap<String, Bytes>>,
    pub mft_number: u64,
    /// Time shift for CRLs' nextUpdate (negative: expired CRLs).
    pub crl_next_update_s: i64,
    /// ASPA objects per CA (index in `specs`): customer AS, provider ASes.
    /// None in the standard lab.
    pub aspas: BTreeMap<usize, Vec<(u32, Vec<u32>)>>,
    /// ASPA EE certificates' validity by customer AS, seconds from now
    /// (default one year).
    pub aspa_valid_s: BTreeMap<u32, i64>,
    /// CRL nextUpdate by CA name ("ta" for the trust anchor), seconds from
    /// now; overrides `crl_next_update_s`.
    pub crl_next_update_s_for: BTreeMap<String, i64>,
}

pub fn notify_uri(port: u16) -> String {
    notify_uri_on("localhost", port)
}

/// A repository's notification URI on `host` (a name or an IP literal).
pub fn notify_uri_on(host: &str, port: u16) -> String {
    format!("https://{host}:{port}/notification.xml")
}

fn rsync(s: &str) -> uri::Rsync {
    uri::Rsync::from_string(s.to_string()).unwrap()
}

/// A TA certificate for `key`, valid until `not_after`.
fn ta_cert(signer: &SoftSigner, key: KeyId, pubkey: &PublicKey, host: &str, port0: u16, not_after: Time) -> Bytes {
    let ta_repo = rsync("rsync://localhost/repo0/ta/");
    let mut tbs = TbsCert::new(
        1u64.into(),
        pubkey.to_subject_name(),
        Validity::new(Time::five_minutes_ago(), not_after),
        None,
        pubkey.clone(),
        KeyUsage::Ca,
        Overclaim::Refuse,
    );
    tbs.set_basic_ca(Some(true));
    tbs.set_ca_repository(Some(ta_repo.clone()));
    tbs.set_rpki_manifest(Some(ta_repo.join(b"ta.mft").unwrap()));
    tbs.set_rpki_notify(Some(uri::Https::from_string(notify_uri_on(host, port0)).unwrap()));
    tbs.build_v4_resource_blocks(|b| b.push(Prefix::new(IpAddr::from([0u8, 0, 0, 0]), 0)));
    tbs.build_v6_resource_blocks(|b| b.push(Prefix::new(IpAddr::from([0u16; 8]), 0)));
    tbs.build_as_resource_blocks(|b| b.push((Asn::MIN, Asn::MAX)));
    tbs.into_cert(signer, &key).unwrap().to_captured().into_bytes()
}

impl World {
    /// Issues the TA certificate again (same key, so the TAL stays),
    /// valid for `valid_s` seconds from now; returns when it expires.
    pub fn reissue_ta(&mut self, valid_s: i64) -> std::time::SystemTime {
        let not_after = chrono_now() + chrono_secs(valid_s);
        self.ta.cert_der = ta_cert(
            &self.signer,
            self.ta.key,
            &self.ta.pubkey,
            &self.host,
            self.ports[0],
            Time::new(not_after),
        );
        std::time::SystemTime::from(not_after)
    }

    fn next_serial(&self) -> Serial {
        self.serial.fetch_add(1, Ordering::Relaxed).into()
    }

    /// Builds the TA and the CAs of `specs`; repository `i` is served on
    /// `localhost:ports[i]` (repository 0 holds the TA's publication point).
    pub fn build(ports: &[u16], specs: Vec<CaSpec>) -> World {
        World::build_on("localhost", ports, specs)
    }

    /// As [`World::build`], with repositories served on `host`.
    pub fn build_on(host: &str, ports: &[u16], specs: Vec<CaSpec>) -> World {
        let signer = SoftSigner::new();
        let key = signer.create_key(PublicKeyFormat::Rsa).unwrap();
        let pubkey = signer.get_key_info(&key).unwrap();
        let ta_repo = rsync("rsync://localhost/repo0/ta/");
        let cert_der = ta_cert(&signer, key, &pubkey, host, ports[0], Time::years_from_now(1));
        let ta = BuiltCa {
            key,
            pubkey,
            cert_der,
            cert_uri: rsync("rsync://localhost/repo0/ta.cer"),
            repo_uri: ta_repo,
            repo: 0,
            name: "ta".into(),
            revoked: Vec::new(),
        };
        let mut w = World {
            signer,
            host: host.to_string(),
            ports: ports.to_vec(),
            ta,
            cas: Vec::new(),
            specs: specs.clone(),
            serial: AtomicU64::new(100),
            objects: vec![BTreeMap::new(); ports.len()],
            mft_number: 1,
            crl_next_update_s: 86_400,
            aspas: BTreeMap::new(),
            aspa_valid_s: BTreeMap::new(),
            crl_next_update_s_for: BTreeMap::new(),
        };
        for spec in &specs {
            let (issuer_key, issuer_pub, issuer_cert_uri, issuer_repo_uri) = {
                let p = match spec.parent {
                    None => &w.ta,
                    Some(i) => &w.cas[i],
                };
                (p.key, p.pubkey.clone(), p.cert_uri.clone(), p.repo_uri.clone())
            };
            let key = w.signer.create_key(PublicKeyFormat::Rsa).unwrap();
            let pubkey = w.signer.get_key_info(&key).unwrap();
            let repo_uri = rsync(&format!("rsync://localhost/repo{}/{}/", spec.repo, spec.name));
            let mut tbs = TbsCert::new(
                w.next_serial(),
                issuer_pub.to_subject_name(),
                Validity::new(Time::five_minutes_ago(), Time::years_from_now(1)),
                None,
                pubkey.clone(),
                KeyUsage::Ca,
                Overclaim::Refuse,
            );
            tbs.set_basic_ca(Some(true));
            tbs.set_authority_key_identifier(Some(issuer_pub.key_identifier()));
            tbs.set_ca_issuer(Some(issuer_cert_uri));
            // The issuer's own CRL: the TA's is ta.crl (RFC 6487 §4.8.6;
            // Routinator checks it against the issuer's manifest).
            let issuer_crl: &[u8] = if spec.parent.is_none() { b"ta.crl" } else { b"crl.crl" };
            tbs.set_crl_uri(Some(issuer_repo_uri.join(issuer_crl).unwrap()));
            tbs.set_ca_repository(Some(repo_uri.clone()));
            tbs.set_rpki_manifest(Some(repo_uri.join(b"mft.mft").unwrap()));
            tbs.set_rpki_notify(Some(
                uri::Https::from_string(notify_uri_on(host, ports[spec.repo])).unwrap(),
            ));
            let v4 = spec.v4.clone();
            let v6 = spec.v6.clone();
            tbs.build_v4_resource_blocks(|b| {
                for (a, l) in &v4 {
                    b.push(Prefix::new(*a, *l));
                }
            });
            tbs.build_v6_resource_blocks(|b| {
                for (a, l) in &v6 {
                    b.push(Prefix::new(*a, *l));
                }
            });
            let (lo, hi) = spec.asns;
            tbs.build_as_resource_blocks(|b| b.push((Asn::from_u32(lo), Asn::from_u32(hi))));
            let cert = tbs.into_cert(&w.signer, &issuer_key).unwrap();
            let cert_uri = issuer_repo_uri.join(format!("{}.cer", spec.name).as_bytes()).unwrap();
            w.cas.push(BuiltCa {
                key,
                pubkey,
                cert_der: cert.to_captured().into_bytes(),
                cert_uri,
                repo_uri,
                repo: spec.repo,
                name: spec.name.clone(),
                revoked: Vec::new(),
            });
        }
        w.publish_all();
        w
    }

    /// (Re)issues every publication point: ROAs, child certificates, CRL
    /// and manifest, into `objects`.
    pub fn publish_all(&mut self) {
        for o in &mut self.objects {
            o.clear();
        }
        let ta_children: Vec<usize> = (0..self.cas.len())
            .filter(|i| self.specs[*i].parent.is_none())
            .collect();
        self.publication_point(None, &ta_children);
        for i in 0..self.cas.len() {
            let children: Vec<usize> = (0..self.cas.len())
                .filter(|j| self.specs[*j].parent == Some(i))
                .collect();
            self.publication_point(Some(i), &children);
        }
        self.mft_number += 1;
    }

    fn publication_point(&mut self, ca: Option<usize>, children: &[usize]) {
        let (key, pubkey, cert_uri, repo_uri, repo, revoked, ca_name) = {
            let c = match ca {
                None => &self.ta,
                Some(i) => &self.cas[i],
            };
            (
                c.key,
                c.pubkey.clone(),
                c.cert_uri.clone(),
                c.repo_uri.clone(),
                c.repo,
                c.revoked.clone(),
                c.name.clone(),
            )
        };
        let crl_name = if ca.is_none() { "ta.crl" } else { "crl.crl" };
        let mft_name = if ca.is_none() { "ta.mft" } else { "mft.mft" };
        let crl_uri = repo_uri.join(crl_name.as_bytes()).unwrap();
        let mut files: Vec<(String, Bytes)> = Vec::new();
        for c in children {
            files.push((format!("{}.cer", self.cas[*c].name), self.cas[*c].cert_der.clone()));
        }
        let roas = match ca {
            None => Vec::new(),
            Some(i) => self.specs[i].roas.clone(),
        };
        for (n, r) in roas.iter().enumerate() {
            let name = format!("roa{n}-as{}.roa", r.asn);
            let mut b = RoaBuilder::new(Asn::from_u32(r.asn));
            for (a, l, m) in &r.prefixes {
                b.push_addr(*a, *l, *m);
            }
            let roa = b
                .finalize(
                    SignedObjectBuilder::new(
                        self.next_serial(),
                        Validity::new(Time::five_minutes_ago(), Time::years_from_now(1)),
                        crl_uri.clone(),
                        cert_uri.clone(),
                        repo_uri.join(name.as_bytes()).unwrap(),
                    ),
                    &self.signer,
                    &key,
                )
                .unwrap();
            files.push((name, roa.to_captured().into_bytes()));
        }
        let aspas = ca.and_then(|i| self.aspas.get(&i)).cloned().unwrap_or_default();
        for (n, (customer, providers)) in aspas.into_iter().enumerate() {
            let name = format!("as{customer}-{n}.asa");
            let valid_s = self.aspa_valid_s.get(&customer).copied().unwrap_or(365 * 86_400);
            let providers: Vec<Asn> = providers.into_iter().map(Asn::from_u32).collect();
            let aspa = AspaBuilder::new(Asn::from_u32(customer), providers)
                .unwrap()
                .finalize(
                    SignedObjectBuilder::new(
                        self.next_serial(),
                        Validity::new(Time::five_minutes_ago(), Time::new(chrono_now() + chrono_secs(valid_s))),
                        crl_uri.clone(),
                        cert_uri.clone(),
                        repo_uri.join(name.as_bytes()).unwrap(),
                    ),
                    &self.signer,
                    &key,
                )
                .unwrap();
            files.push((name, aspa.to_captured().into_bytes()));
        }
        let now = Time::five_minutes_ago();
        let next_s = self
            .crl_next_update_s_for
            .get(&ca_name)
            .copied()
            .unwrap_or(self.crl_next_update_s);
        let next = Time::new(chrono_now() + chrono_secs(next_s));
        let entries: Vec<CrlEntry> = revoked
            .iter()
            .map(|s| CrlEntry::new((*s).into(), Time::five_minutes_ago()))
            .collect();
        let crl = TbsCertList::new(
            Default::default(),
            pubkey.to_subject_name(),
            now,
            next,
            entries,
            pubkey.key_identifier(),
            self.mft_number.into(),
        )
        .into_crl(&self.signer, &key)
        .unwrap();
        files.push((crl_name.into(), crl.to_captured().into_bytes()));
        let list: Vec<FileAndHash<Bytes, Bytes>> = files
            .iter()
            .map(|(n, d)| {
                FileAndHash::new(
                    Bytes::from(n.clone()),
                    Bytes::copy_from_slice(rpki::crypto::DigestAlgorithm::default().digest(d).as_ref()),
                )
            })
            .collect();
        let content = ManifestContent::new(
            self.mft_number.into(),
            Time::five_minutes_ago(),
            Time::tomorrow(),
            Default::default(),
            list.iter(),
        );
        let mft = content
            .into_manifest(
                SignedObjectBuilder::new(
                    self.next_serial(),
                    Validity::new(Time::five_minutes_ago(), Time::tomorrow()),
                    crl_uri.clone(),
                    cert_uri.clone(),
                    repo_uri.join(mft_name.as_bytes()).unwrap(),
                ),
                &self.signer,
                &key,
            )
            .unwrap();
        files.push((mft_name.into(), mft.to_captured().into_bytes()));
        let objs = &mut self.objects[repo];
        for (n, d) in files {
            objs.insert(repo_uri.join(n.as_bytes()).unwrap().to_string(), d);
        }
    }

    /// The TAL text: the TA certificate's HTTPS URI (served by repository
    /// 0's listener at `/ta.cer`) and its key.
    pub fn tal(&self) -> String {
        use base64::Engine;
        let key = self.ta.pubkey.to_info_bytes();
        format!(
            "https://{}:{}/ta.cer\n\n{}\n",
            self.host,
            self.ports[0],
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn chrono_secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// One repository's RRDP publication: session, serial, the files served.
pub struct Publisher {
    pub session: uuid::Uuid,
    pub serial: u64,
    pub held: BTreeMap<String, Bytes>,
    /// (serial, path, content) of deltas kept.
    pub deltas: Vec<(u64, String, Bytes)>,
    pub port: u16,
    pub host: String,
}

impl Publisher {
    pub fn new(port: u16) -> Publisher {
        Publisher::new_on("localhost", port)
    }

    /// A publisher whose URIs name `host`.
    pub fn new_on(host: &str, port: u16) -> Publisher {
        Publisher {
            host: host.to_string(),
            session: {
                let mut b = [0u8; 16];
                getrandom::fill(&mut b).unwrap();
                uuid::Builder::from_random_bytes(b).into_uuid()
            },
            serial: 0,
            held: BTreeMap::new(),
            deltas: Vec::new(),
            port,
        }
    }

    /// Publishes `objects` as the next serial: a delta from the held state
    /// (when there is one) and a new snapshot. Returns the files to serve
    /// (path → content).
    pub fn publish(&mut self, objects: &BTreeMap<String, Bytes>) -> BTreeMap<String, Bytes> {
        let next = self.serial + 1;
        if self.serial > 0 {
            let mut el: Vec<DeltaElement> = Vec::new();
            for (u, d) in objects {
                match self.held.get(u) {
                    None => el.push(PublishElement::new(rsync(u), d.clone()).into()),
                    Some(old) if old != d => {
                        el.push(UpdateElement::new(rsync(u), Hash::from_data(old), d.clone()).into())
                    }
                    _ => {}
                }
            }
            for (u, old) in &self.held {
                if !objects.contains_key(u) {
                    el.push(WithdrawElement::new(rsync(u), Hash::from_data(old)).into());
                }
            }
            let delta = rpki::rrdp::Delta::new(self.session, next, el);
            let mut x = Vec::new();
            delta.write_xml(&mut x).unwrap();
            self.deltas
                .push((next, format!("/{}/delta-{next}.xml", self.session), Bytes::from(x)));
        }
        self.serial = next;
        self.held = objects.clone();
        self.files()
    }

    /// The files for the current state.
    pub fn files(&self) -> BTreeMap<String, Bytes> {
        let base = format!("https://{}:{}", self.host, self.port);
        let snap = rpki::rrdp::Snapshot::new(
            self.session,
            self.serial,
            self.held
                .iter()
                .map(|(u, d)| PublishElement::new(rsync(u), d.clone()))
                .collect(),
        );
        let mut sx = Vec::new();
        snap.write_xml(&mut sx).unwrap();
        let snap_path = format!("/{}/snapshot-{}.xml", self.session, self.serial);
        let deltas: Vec<DeltaInfo> = self
            .deltas
            .iter()
            .rev()
            .map(|(s, p, d)| {
                DeltaInfo::new(
                    *s,
                    uri::Https::from_string(format!("{base}{p}")).unwrap(),
                    Hash::from_data(d),
                )
            })
            .collect();
        let nf = rpki::rrdp::NotificationFile::new(
            self.session,
            self.serial,
            UriAndHash::new(
                uri::Https::from_string(format!("{base}{snap_path}")).unwrap(),
                Hash::from_data(&sx),
            ),
            deltas,
        );
        let mut nx = Vec::new();
        nf.write_xml(&mut nx).unwrap();
        let mut files = BTreeMap::new();
        files.insert("/notification.xml".to_string(), Bytes::from(nx));
        files.insert(snap_path, Bytes::from(sx));
        for (_, p, d) in &self.deltas {
            files.insert(p.clone(), d.clone());
        }
        files
    }
}

/// A lab: world, publishers and servers, everything published.
pub struct Lab {
    pub world: World,
    pub publishers: Vec<Publisher>,
    pub servers: Vec<RepoServer>,
    pub tls: Tls,
}

impl Lab {
    /// Builds `specs` over `repos` repositories and starts serving.
    pub fn start(repos: usize, specs: Vec<CaSpec>) -> Lab {
        Lab::start_inner(None, repos, specs)
    }

    /// As [`Lab::start`], every repository served on `ip` and named by it
    /// in URIs.
    pub fn start_on(ip: IpAddr, repos: usize, specs: Vec<CaSpec>) -> Lab {
        Lab::start_inner(Some(ip), repos, specs)
    }

    fn start_inner(ip: Option<IpAddr>, repos: usize, specs: Vec<CaSpec>) -> Lab {
        let host = ip.map(|i| i.to_string()).unwrap_or_else(|| "localhost".into());
        let tls = tls_for(&[host.as_str()]);
        let bind = ip.unwrap_or_else(|| "127.0.0.1".parse().unwrap());
        let bound: Vec<_> = (0..repos).map(|_| RepoServer::bind_on(bind)).collect();
        let ports: Vec<u16> = bound.iter().map(|(s, _)| s.port).collect();
        let world = World::build_on(&host, &ports, specs);
        let mut servers = Vec::new();
        for (s, l) in bound {
            s.serve(l, tls.server.clone());
            servers.push(s);
        }
        let publishers = ports.iter().map(|p| Publisher::new_on(&host, *p)).collect();
        let mut lab = Lab {
            world,
            publishers,
            servers,
            tls,
        };
        lab.republish();
        lab
    }

    /// Publishes the world's current objects as each repository's next
    /// serial and serves them.
    pub fn republish(&mut self) {
        for (i, p) in self.publishers.iter_mut().enumerate() {
            let mut files = p.publish(&self.world.objects[i]);
            if i == 0 {
                files.insert("/ta.cer".into(), self.world.ta.cert_der.clone());
            }
            *self.servers[i].files.lock().unwrap() = files;
        }
    }

    /// Writes the TAL and the HTTPS CA into `dir`; returns their paths.
    pub fn write_trust(&self, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let tal = dir.join("lab.tal");
        std::fs::write(&tal, self.world.tal()).unwrap();
        let ca = dir.join("https-ca.pem");
        std::fs::write(&ca, &self.tls.ca_pem).unwrap();
        (tal, ca)
    }
}
