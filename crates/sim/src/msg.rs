//! What simulated centers say to each other: the peer API of PROTOCOL.md,
//! one variant per call or answer, without the HTTP around it.

use regmesh_core::Record;
use regmesh_proto::mesh::votes::VoteId;
use regmesh_proto::tally::Answer;
use regmesh_proto::wire::beat::Beat;
use regmesh_proto::wire::flood::Flood;
use regmesh_proto::wire::hello::{Hello, HelloAnswer};
use regmesh_proto::wire::pull::{PullPage, PullRequest};
use regmesh_proto::wire::vote::VoteRequest;

/// (kind, id).
pub type Key = (String, String);

#[derive(Debug, Clone)]
pub enum Msg {
    /// `POST /mesh/v1/hello`, numbered (the link part's call) so its
    /// answer can be matched.
    Hello {
        n: u64,
        body: Hello,
    },
    /// Its answer (accepted or refused).
    HelloOk {
        n: u64,
        answer: HelloAnswer,
    },
    /// `POST /heartbeat/node/:id` (`wire::beat`), numbered so its answer
    /// can be matched.
    Beat {
        n: u64,
        body: Beat,
    },
    /// The 200 answer, carrying the receiver's own beat.
    BeatOk {
        n: u64,
        body: Beat,
    },
    /// `POST /commit` (DRiP-Node-ID/-Counter/-Counter-reset,
    /// RegMesh-Seq-From).
    Flood(Flood),
    /// `POST /mesh/v1/pull`.
    /// Numbered by the puller's page call, so its answer can be matched.
    PullReq {
        call: u64,
        request: PullRequest,
    },
    PullAnswer {
        call: u64,
        page: PullPage<Record>,
    },
    /// `POST /voting`, the vote named as the headers name it.
    VoteReq {
        vote: VoteId,
        request: VoteRequest,
    },
    /// `POST /voting` refused (400: a deadline too far ahead).
    VoteRefused {
        vote: VoteId,
    },
    /// `POST /votingphase/node/:id/response/:r`.
    /// Carries the centers it speaks for (PROTOCOL.md, "Votes on new ids").
    VoteAnswer {
        vote: VoteId,
        answer: Answer,
    },
}

/// Bytes a record takes on the wire in the scale model (document 000 §3.3.1:
/// mandatory and recommended fields, about 500 bytes).
pub const RECORD_WIRE_BYTES: u64 = 500;
/// Per-call overhead: HTTP request line and headers, the peer-call token
/// (about 300 bytes, PROTOCOL.md), TCP/TLS framing of a kept-alive
/// connection. Measured on the node: a one-record flood is 1267 bytes on
/// the wire of which about 500 are the record.
pub const CALL_OVERHEAD_BYTES: u64 = 700;
/// One watermark in a beat (`"origin-id":12345,`).
pub const MARK_WIRE_BYTES: u64 = 24;

impl Msg {
    /// Estimated bytes on the wire (request or answer, with its overhead).
    pub fn wire_bytes(&self) -> u64 {
        let body = match self {
            Msg::Hello { .. } | Msg::HelloOk { .. } => 100,
            Msg::Beat { body, .. } | Msg::BeatOk { body, .. } => {
                60 + MARK_WIRE_BYTES * body.watermarks.len() as u64
                    + 90 * body.digests.values().map(|d| d.len() as u64).sum::<u64>()
            }
            Msg::Flood(f) => 40 + RECORD_WIRE_BYTES * f.records.len() as u64,
            Msg::PullReq { .. } => 80,
            Msg::PullAnswer { page, .. } => 120 + RECORD_WIRE_BYTES * page.records.len() as u64,
            Msg::VoteReq { .. } => 100,
            Msg::VoteRefused { .. } => 40,
            Msg::VoteAnswer { answer, .. } => 40 + 12 * (answer.yes.len() + answer.no.len()) as u64,
        };
        body + CALL_OVERHEAD_BYTES
    }

    pub fn records(&self) -> &[Record] {
        match self {
            Msg::Flood(f) => &f.records,
            Msg::PullAnswer { page, .. } => &page.records,
            _ => &[],
        }
    }
}
