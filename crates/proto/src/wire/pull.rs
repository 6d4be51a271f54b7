//! Peer messages of part `pull` (see the module docs of `wire`): the
//! anti-entropy pull (`POST /mesh/v1/pull`, a regmesh extension) and its
//! answer page, and the bodies of DRiP's full sync (`PUT /sync/node/:id`,
//! `sync` messages on `/commit`). JSON-compatible with the wire before the
//! types existed (PROTOCOL.md, "Anti-entropy" and "Full sync").
//!
//! Records travel as the peer wire carries them: a page is generic over the
//! record's form, `String` (base64url of the signed encoding) on the wire,
//! `regmesh_core::Record` once decoded, so the simulator can pass records
//! without encoding them. Must never decide anything (`mesh::pulls` does).

use crate::policy::ExportPolicy;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `POST /mesh/v1/pull`: `origin`'s versions after `after`, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub origin: String,
    #[serde(default)]
    pub after: u64,
    /// Records asked for; the responder clamps it to
    /// [`crate::mesh::pulls::PULL_PAGE_RECORDS_MAX`].
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    crate::mesh::pulls::PULL_PAGE_RECORDS_MAX
}

/// An export policy as the wire names it: what the sender sends the
/// receiver, so the receiver can tell "withheld" from "gone".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNames {
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl From<&ExportPolicy> for PolicyNames {
    fn from(p: &ExportPolicy) -> Self {
        PolicyNames {
            kinds: p.kinds.iter().cloned().collect(),
            groups: p.groups.iter().cloned().collect(),
        }
    }
}

impl From<PolicyNames> for ExportPolicy {
    fn from(p: PolicyNames) -> Self {
        ExportPolicy::new(p.kinds, p.groups)
    }
}

/// The answer to a pull: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullPage<R> {
    /// The origin's versions after `after`, tombstones included, that the
    /// puller may see, in seq order.
    pub records: Vec<R>,
    /// The seq through which this page speaks for the origin (sent, or
    /// withheld by policy).
    pub covered_through: u64,
    /// Whether the responder has more after `covered_through`.
    #[serde(default)]
    pub more: bool,
    /// The responder's purge mark of the origin: deletions up to it can no
    /// longer be shown ("Tombstone horizon").
    #[serde(default)]
    pub purged_through: u64,
    /// What the responder sends the puller. Absent in answers of older
    /// centers: a resync then drops nothing.
    #[serde(default)]
    pub policy: Option<PolicyNames>,
    /// On a page that ends at the responder's own mark (`more` false): the
    /// keys of the origin it holds only in a version above that mark (one
    /// the puller may see), which the page cannot carry. A resync keeps
    /// what they name (PROTOCOL.md, "Tombstone horizon"). Empty, and
    /// absent on the wire, when there are none and from older responders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_above: Vec<KeyName>,
    /// The responder holds more above its mark than `held_above` names
    /// ([`crate::mesh::pulls::HELD_ABOVE_NAMES_MAX`]): a resync may drop
    /// nothing on this page's word.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_above_more: bool,
}

/// A record's key, named without its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyName {
    pub kind: String,
    pub id: String,
}

impl<R> PullPage<R> {
    /// The same page with each record converted (decoded or encoded); the
    /// first error is returned.
    pub fn try_map<S, E>(self, f: impl FnMut(R) -> Result<S, E>) -> Result<PullPage<S>, E> {
        Ok(PullPage {
            records: self.records.into_iter().map(f).collect::<Result<_, E>>()?,
            covered_through: self.covered_through,
            more: self.more,
            purged_through: self.purged_through,
            policy: self.policy,
            held_above: self.held_above,
            held_above_more: self.held_above_more,
        })
    }
}

/// The body of a `sync` message (`POST /commit` with
/// `DRiP-Transaction-Type: sync`); the complete one carries the pusher's
/// watermarks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBody<R> {
    pub records: Vec<R>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermarks: Option<HashMap<String, u64>>,
}

/// The answer to a `sync` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAccepted {
    pub accepted: bool,
    pub applied: usize,
    pub complete: bool,
}

/// The answer to `PUT /sync/node/:id`: the push follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequestAccepted {
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_messages_read_as_before() {
        let r: PullRequest = serde_json::from_str(r#"{"origin":"c2"}"#).expect("request");
        assert_eq!(r.after, 0);
        assert_eq!(r.limit, 1000);
        let p: PullPage<String> = serde_json::from_str(r#"{"records":["AAA"],"covered_through":7}"#).expect("old page");
        assert!(!p.more);
        assert_eq!(p.purged_through, 0);
        assert!(p.policy.is_none());
        let page = PullPage {
            records: vec!["x".to_string()],
            covered_through: 9,
            more: true,
            purged_through: 3,
            policy: Some(PolicyNames {
                kinds: vec!["agent".into()],
                groups: vec![],
            }),
            held_above: vec![],
            held_above_more: false,
        };
        let v = serde_json::to_value(&page).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"records":["x"],"covered_through":9,"more":true,"purged_through":3,
                "policy":{"kinds":["agent"],"groups":[]}}),
            "no names: the page an older center sends"
        );
        let named = PullPage {
            held_above: vec![KeyName {
                kind: "agent".into(),
                id: "y".into(),
            }],
            held_above_more: true,
            ..page
        };
        let v = serde_json::to_value(&named).expect("json");
        assert_eq!(v["held_above"], serde_json::json!([{"kind":"agent","id":"y"}]));
        assert_eq!(v["held_above_more"], serde_json::json!(true));
        let back: PullPage<String> = serde_json::from_value(v).expect("names read back");
        assert_eq!(back, named);
        assert!(
            serde_json::from_str::<PullPage<String>>(r#"{"records":[]}"#).is_err(),
            "covered_through is required"
        );
        let s: SyncBody<String> = serde_json::from_str(r#"{"records":[],"watermarks":{"c3":4}}"#).expect("sync");
        assert_eq!(s.watermarks.expect("marks").get("c3"), Some(&4));
    }
}
