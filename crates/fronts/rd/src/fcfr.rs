//! Registration authorization, first come, first remembered (RFC 9176
//! §7.5): an endpoint name (ep, d) registered over coaps is bound to the
//! DTLS PSK identity that registered it, and only that identity may
//! register it again, update it or remove it.
//!
//! Our choices, where the RFC leaves them open:
//! - The binding is remembered as long as a registration of the name is
//!   live at any center (it travels in the record's `auth` field); once
//!   every one has been removed or has expired, the name is free again.
//!   Remembering longer would need a second table with its own lifetime.
//! - A name registered over coap (no DTLS) is bound to nobody: any
//!   registrant may take it over, and one who does over coaps binds it.
//! - A request without an identity on a bound name gets 4.01
//!   (Unauthorized: present credentials); one with another identity gets
//!   4.03 (Forbidden). The diagnostic never names the bound identity.
//! - Two centers cut off from each other can each accept a different
//!   identity for the same name; when they meet, the newer registration
//!   wins lookups (handover), as for any concurrent registration.
//!
//! Must never: write, or let a refused request change anything.

use crate::handlers::Reply;
use crate::kind::{Registration, REGISTRATION};
use crate::lookup;
use coap_lite::ResponseType;
use regmesh_node::handle::ListQuery;
use regmesh_node::NodeHandle;

/// Whether `identity` (None: plain coap) may act on a name bound to `bound`.
pub fn check(bound: Option<&str>, identity: Option<&str>) -> Result<(), Reply> {
    match (bound, identity) {
        (None, _) => Ok(()),
        (Some(b), Some(i)) if b == i => Ok(()),
        (Some(_), None) => Err(Reply::diag(
            ResponseType::Unauthorized,
            "this endpoint name is bound to a DTLS identity: register over coaps with it",
        )),
        (Some(_), Some(_)) => Err(Reply::diag(
            ResponseType::Forbidden,
            "this endpoint name is bound to another DTLS identity (first come, first remembered)",
        )),
    }
}

/// Whether `identity` may register (ep, d): no live registration of the
/// name, at any center, is bound to another identity.
pub fn may_register(node: &NodeHandle, ep: &str, d: &str, identity: Option<&str>) -> Result<(), Reply> {
    let key = Registration::epd(ep, d);
    let now = lookup::now_ms();
    let mut cursor: Option<String> = None;
    // At most one registration per center and name: a few pages at most.
    for _ in 0..64 {
        let q = ListQuery {
            filters: vec![("epd", &key)],
            cursor: cursor.as_deref(),
            limit: Some(node.limits().list_limit_max),
        };
        let page = node
            .list(REGISTRATION, &q)
            .map_err(|e| Reply::diag(ResponseType::ServiceUnavailable, e))?;
        for r in &page.records {
            if let Some(e) = lookup::entry(r, now) {
                check(e.reg.auth.as_deref(), identity)?;
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
    Err(Reply::diag(
        ResponseType::ServiceUnavailable,
        "too many registrations of this name to check",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_names_refuse_other_and_missing_identities() {
        assert!(check(None, None).is_ok());
        assert!(check(None, Some("a")).is_ok());
        assert!(check(Some("a"), Some("a")).is_ok());
        assert_eq!(check(Some("a"), None).unwrap_err().code, ResponseType::Unauthorized);
        let other = check(Some("a"), Some("b")).unwrap_err();
        assert_eq!(other.code, ResponseType::Forbidden);
        assert!(!String::from_utf8_lossy(&other.payload).contains("\"a\""));
    }
}
