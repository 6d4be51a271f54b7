//! Protocol versions in the mesh runtime: the HELLO this center sends, what
//! it concludes from the answer, how it answers a peer's HELLO, and the
//! record-format header protocol version 2 adds to floods and pull pages.
//! Which version is spoken, and what a message may carry, are
//! `regmesh_proto::version`'s decisions.
//!
//! A version is kept for a peer only from an authenticated exchange: the
//! answer to our HELLO (over TLS verified for that peer), or a HELLO whose
//! client certificate names the peer it claims to be. Must never change a
//! peer's lifecycle (the link part does, `beats.rs`).

use super::{Mesh, Peer};
use regmesh_proto::version::{self, HelloRefusal, RecordFormatError};
use regmesh_proto::wire::hello::{Hello, HelloAnswer};
use rustls::pki_types::CertificateDer;

/// The HTTP status of a HELLO answer for `verdict`.
fn status_of(verdict: &Result<u16, HelloRefusal>) -> u16 {
    match verdict {
        Ok(_) => 200,
        Err(HelloRefusal::NotAPeer { .. }) => 403,
        Err(HelloRefusal::NoCommonVersion { .. }) => 409,
        Err(_) => 400,
    }
}

impl Mesh {
    /// The body of our HELLO: our id, interval and protocol versions.
    pub(super) fn hello_body(&self) -> Vec<u8> {
        serde_json::to_vec(&Hello::new(&self.me, self.interval_ms, self.versions)).expect("json")
    }

    /// Our HELLO to `peer` was answered with `status` and `body`: the
    /// version we speak with it from now on, or why there is none (kept for
    /// `/v1/peers`; the peer then stays KNOWN).
    pub(super) fn hello_answered(&self, peer: &Peer, status: u16, body: &[u8]) -> Result<u16, HelloRefusal> {
        let verdict = version::read_hello_answer(self.versions, status, body);
        let mut p = peer.protocol.lock().expect("protocol lock");
        match &verdict {
            Ok(v) => p.agreed(*v),
            Err(r) => p.refused(r.clone()),
        }
        verdict
    }

    /// Answers a HELLO that came with client certificate `cert` (if any):
    /// the HTTP status and the answer. When the certificate names the
    /// sender, the outcome is kept for it as our own HELLO's would be.
    pub fn answer_hello(&self, hello: &Hello, cert: Option<&CertificateDer<'_>>) -> (u16, HelloAnswer) {
        let peer = self.peer(&hello.id);
        let verdict = version::judge_hello(self.versions, hello, peer.is_some());
        if let Some(peer) = peer.filter(|_| cert.is_some_and(|c| self.trust.names(c, &hello.id))) {
            let mut p = peer.protocol.lock().expect("protocol lock");
            match &verdict {
                Ok(v) => p.agreed(*v),
                Err(r) => p.refused(r.clone()),
            }
        }
        if let Err(r) = &verdict {
            tracing::debug!(peer = %hello.id, "HELLO refused: {r}");
        }
        (
            status_of(&verdict),
            version::hello_answer(&self.me, self.versions, &verdict),
        )
    }

    /// The header a flood or pull page to `peer` carries for the version we
    /// speak with it: the records' format from version 2 on, else none.
    pub fn record_format_header(&self, peer: &Peer) -> Option<(&'static str, String)> {
        let v = peer.protocol.lock().expect("protocol lock").speak();
        version::says_record_format(v).then(|| {
            (
                version::RECORD_FORMAT_HEADER,
                regmesh_core::codec::FORMAT_V1.to_string(),
            )
        })
    }

    /// The record format a received flood or pull page declares (its
    /// header, if any); an error refuses it whole.
    pub fn record_format_of(&self, header: Option<&str>) -> Result<u8, RecordFormatError> {
        version::read_record_format(self.versions, header)
    }
}
