//! The coaps transport (RFC 7252 §9, PreSharedKey mode): one UDP socket,
//! one DTLS 1.2 session per peer address, each handshake and record layer
//! run by `webrtc-dtls`. This file demultiplexes datagrams to sessions,
//! runs each session's task (handshake, then decrypted CoAP messages into
//! [`Server::datagram`] with the peer's PSK identity), and sends the
//! server's messages through the peer's session.
//!
//! Must never: let a datagram from an unknown peer start a session unless it
//! is a DTLS handshake record; hold more than [`SESSIONS_MAX`] sessions or
//! buffer more than [`QUEUED_MAX`] datagrams per session; hand the CoAP layer
//! a message from a session whose handshake did not complete; or send a
//! CoAP message in the clear.

use super::*;
use crate::psk::PskTable;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;

/// Most DTLS sessions at once (handshaking ones included); new peers past
/// it are ignored until one ends.
pub const SESSIONS_MAX: usize = 1024;
/// Datagrams queued per session and direction; more are dropped (CoAP
/// retransmits).
const QUEUED_MAX: usize = 32;
/// A handshake not finished by then fails.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session with nothing received for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// DTLS record content type of handshake messages.
const CONTENT_HANDSHAKE: u8 = 22;

/// One peer's session as the demultiplexer sees it.
struct Session {
    /// Datagrams from the peer, to the DTLS record layer.
    inbound: mpsc::Sender<Vec<u8>>,
    /// CoAP messages to the peer, to be encrypted.
    outbound: mpsc::Sender<Vec<u8>>,
    /// Tells this session from a later one of the same address.
    serial: u64,
    /// Set once the handshake has completed.
    established: Arc<std::sync::atomic::AtomicBool>,
}

/// The coaps side of a [`Server`].
pub(super) struct Dtls {
    sock: Arc<UdpSocket>,
    psk: Arc<PskTable>,
    sessions: Mutex<HashMap<SocketAddr, Session>>,
    serial: std::sync::atomic::AtomicU64,
}

impl Dtls {
    pub(super) fn new(sock: UdpSocket, psk: Arc<PskTable>) -> Dtls {
        Dtls {
            sock: Arc::new(sock),
            psk,
            sessions: Mutex::new(HashMap::new()),
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Queues a CoAP message for `peer`'s session; dropped if there is none
    /// or its queue is full.
    pub(super) fn send(&self, bytes: &[u8], peer: SocketAddr) {
        let sessions = lock(&self.sessions);
        match sessions.get(&peer) {
            Some(s) => {
                if s.outbound.try_send(bytes.to_vec()).is_err() {
                    tracing::debug!(%peer, "rd: coaps send queue full; dropped");
                }
            }
            None => tracing::debug!(%peer, "rd: no DTLS session to send on"),
        }
    }

    fn config(&self) -> Config {
        let psk = self.psk.clone();
        Config {
            psk: Some(Arc::new(move |identity: &[u8]| {
                psk.key(identity)
                    .map(<[u8]>::to_vec)
                    .ok_or(webrtc_dtls::Error::ErrIdentityNoPsk)
            })),
            cipher_suites: vec![
                CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
                CipherSuiteId::Tls_Psk_With_Aes_128_Ccm,
                CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256,
            ],
            extended_master_secret: ExtendedMasterSecretType::Request,
            ..Default::default()
        }
    }

    fn end(&self, peer: SocketAddr, serial: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(&peer).is_some_and(|s| s.serial == serial) {
            sessions.remove(&peer);
        }
    }
}

/// Whether `data` is a plausible first datagram of a DTLS 1.x handshake.
fn starts_handshake(data: &[u8]) -> bool {
    data.len() >= 13 && data[0] == CONTENT_HANDSHAKE && data[1] == 0xfe
}

/// Whether `data` is an epoch-0 ClientHello: on an established session, a
/// client that lost its state starts a new one (RFC 6347 §4.2.8).
fn is_new_client_hello(data: &[u8]) -> bool {
    starts_handshake(data) && data[3..5] == [0, 0] && data.len() > 13 && data[13] == 1
}

/// The DTLS record layer's view of one peer: datagrams from the
/// demultiplexer in, datagrams to the socket out.
struct PeerConn {
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
}

fn closed() -> webrtc_util::Error {
    webrtc_util::Error::ErrBufferClosed
}

#[async_trait::async_trait]
impl webrtc_util::Conn for PeerConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(())
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let d = self.inbound.lock().await.recv().await.ok_or_else(closed)?;
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        Ok((self.recv(buf).await?, self.peer))
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.sock.send_to(buf, self.peer).await?)
    }
    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        // Only ever to the session's own peer.
        self.send(buf).await
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        self.inbound.lock().await.close();
        Ok(())
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

impl Server {
    /// The coaps receive loop: each datagram to its peer's session; a
    /// handshake from a new peer starts one.
    pub(super) async fn run_dtls(self: Arc<Self>, dtls: &Dtls) {
        let mut closing = self.node.closing();
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        loop {
            let (n, peer) = tokio::select! {
                r = dtls.sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "rd: coaps recv");
                        continue;
                    }
                },
                _ = closing.changed() => return,
            };
            let data = buf[..n].to_vec();
            let mut sessions = lock(&dtls.sessions);
            if let Some(s) = sessions.get(&peer) {
                if !(s.established.load(Ordering::Relaxed) && is_new_client_hello(&data)) {
                    let _ = s.inbound.try_send(data);
                    continue;
                }
                // Dropping its queues ends the old session's task.
                tracing::debug!(%peer, "rd: new DTLS handshake replaces the session");
                sessions.remove(&peer);
            }
            if !starts_handshake(&data) {
                continue;
            }
            if sessions.len() >= SESSIONS_MAX {
                tracing::debug!(%peer, "rd: DTLS session table full; handshake ignored");
                continue;
            }
            let (in_tx, in_rx) = mpsc::channel(QUEUED_MAX);
            let (out_tx, out_rx) = mpsc::channel(QUEUED_MAX);
            let _ = in_tx.try_send(data);
            let serial = dtls.serial.fetch_add(1, Ordering::Relaxed);
            let established = Arc::new(std::sync::atomic::AtomicBool::new(false));
            sessions.insert(
                peer,
                Session {
                    inbound: in_tx,
                    outbound: out_tx,
                    serial,
                    established: established.clone(),
                },
            );
            drop(sessions);
            let conn = Arc::new(PeerConn {
                sock: dtls.sock.clone(),
                peer,
                inbound: tokio::sync::Mutex::new(in_rx),
            });
            let s = self.clone();
            let config = dtls.config();
            tokio::spawn(async move {
                s.session(conn, config, out_rx, established).await;
                if let Transport::Dtls(d) = &s.transport {
                    d.end(peer, serial);
                }
            });
        }
    }

    /// One peer's session: the handshake, then its CoAP messages both ways
    /// until it closes, fails or idles out.
    async fn session(
        self: &Arc<Self>,
        conn: Arc<PeerConn>,
        config: Config,
        mut outbound: mpsc::Receiver<Vec<u8>>,
        established: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let peer = conn.peer;
        let handshake = DTLSConn::new(conn.clone(), config, false, None);
        let dtls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "rd: DTLS handshake refused");
                let _ = webrtc_util::Conn::close(conn.as_ref()).await;
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "rd: DTLS handshake timed out");
                let _ = webrtc_util::Conn::close(conn.as_ref()).await;
                return;
            }
        };
        let identity = dtls.connection_state().await.identity_hint;
        let Ok(identity) = String::from_utf8(identity) else {
            let _ = dtls.close().await;
            return;
        };
        let identity: Arc<str> = identity.into();
        established.store(true, Ordering::Relaxed);
        tracing::debug!(%peer, identity = %identity, "rd: DTLS session open");
        let mut closing = self.node.closing();
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        loop {
            tokio::select! {
                r = dtls.read(&mut buf, Some(IDLE_TIMEOUT)) => match r {
                    Ok(n) => self.datagram(&buf[..n], peer, Some(identity.clone())),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "rd: DTLS session ends");
                        break;
                    }
                },
                m = outbound.recv() => match m {
                    Some(bytes) => {
                        if let Err(e) = dtls.write(&bytes, None).await {
                            tracing::debug!(%peer, error = %e, "rd: DTLS write");
                            break;
                        }
                    }
                    None => break,
                },
                _ = closing.changed() => break,
            }
        }
        let _ = dtls.close().await;
    }
}
