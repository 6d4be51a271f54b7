//! Deliberately broken protocol variants, compiled only with the `broken`
//! feature, so the simulator can prove its invariants catch real mistakes.
//!
//! Each variant is a switch read at one decision point of this crate. It is
//! off unless a test turns it on for the current thread (the simulator runs
//! one seed per thread), so a binary built with the feature still behaves
//! correctly unless asked otherwise.

use std::cell::Cell;

/// A known-wrong change to one protocol decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// [`crate::sync::Marks::advance`] moves a watermark over a gap, so a
    /// lost flood is never pulled again.
    WatermarkSkipsGaps,
    /// [`crate::flood::allowed`] lets relayed records through without the
    /// receiving peer's export policy.
    RelayIgnoresPolicy,
    /// [`crate::vote::Claims::vote`] answers yes without holding a claim, so
    /// two concurrent creates of one id can both win.
    VoteWithoutClaim,
    /// [`crate::lifecycle::PeerLifecycle`] judges a peer's silence by our own
    /// beat interval instead of the one the peer announced.
    LifecycleOwnInterval,
    /// [`crate::tally::Rule::needed`] is one short, so a claim is granted
    /// before a quorum said yes.
    TallyDecidesEarly,
    /// [`crate::policy::ExportPolicy::allows`] lets every tombstone
    /// through, whatever its kind and visibility.
    ExportLetsTombstones,
    /// [`crate::digest::element`] leaves the HLC's logical counter out, so
    /// two versions in one millisecond digest alike.
    DigestSkipsLogical,
    /// [`crate::sync::resync_needed`] is one seq late: a peer that purged
    /// exactly one deletion past our mark is pulled from without a resync,
    /// so the record that deletion removed stays here.
    ResyncOffByOne,
    /// [`crate::sync::Ceilings::bound`] takes a relay's claim whole, so a
    /// peer that lies about another origin moves our mark past anything
    /// that origin issued.
    CeilingsTrustRelays,
}

impl Variant {
    pub const ALL: [Variant; 9] = [
        Variant::WatermarkSkipsGaps,
        Variant::RelayIgnoresPolicy,
        Variant::VoteWithoutClaim,
        Variant::LifecycleOwnInterval,
        Variant::TallyDecidesEarly,
        Variant::ExportLetsTombstones,
        Variant::DigestSkipsLogical,
        Variant::ResyncOffByOne,
        Variant::CeilingsTrustRelays,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::WatermarkSkipsGaps => "watermark-skips-gaps",
            Variant::RelayIgnoresPolicy => "relay-ignores-policy",
            Variant::VoteWithoutClaim => "vote-without-claim",
            Variant::LifecycleOwnInterval => "lifecycle-own-interval",
            Variant::TallyDecidesEarly => "tally-decides-early",
            Variant::ExportLetsTombstones => "export-lets-tombstones",
            Variant::DigestSkipsLogical => "digest-skips-logical",
            Variant::ResyncOffByOne => "resync-off-by-one",
            Variant::CeilingsTrustRelays => "ceilings-trust-relays",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

thread_local! {
    static ACTIVE: Cell<Option<Variant>> = const { Cell::new(None) };
}

/// Turns `v` on (or everything off) for this thread.
pub fn set(v: Option<Variant>) {
    ACTIVE.with(|a| a.set(v));
}

/// Whether `v` is on for this thread.
pub fn is(v: Variant) -> bool {
    ACTIVE.with(|a| a.get() == Some(v))
}
