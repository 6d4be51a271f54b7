//! In-memory indexes over the records of a store, rebuilt on start.
//!
//! Per kind: a primary hash map `id → IndexEntry`, the ids in order (so
//! listing pages by id without touching the store), and term sets `(field, value) → {ids}` for the
//! fields a kind indexes plus `origin`. The caller supplies the terms; the
//! index knows no kind.
//!
//! Each entry carries the blake3 digest of the exact record bytes whose
//! signature was verified when they entered this center. A read from the
//! backend is checked against it, so bytes changed on disk after verification
//! are caught on every read at the cost of one hash, not one signature check.
//!
//! Invariant: a term set contains an id iff the primary entry for that id is
//! live and was indexed with that term. Queries never scan the primary map
//! when a filter is given.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// blake3 digest of a record's stored bytes.
pub type Digest = [u8; 32];

/// blake3 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    *blake3::hash(bytes).as_bytes()
}

/// What the index knows of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Digest of the verified stored bytes.
    pub digest: Digest,
    /// Tombstone (kept until purged; invisible to queries).
    pub deleted: bool,
    /// Origin of the stored version and its sequence number there.
    pub origin: Arc<str>,
    pub seq: u64,
    /// Visibility class (from [`Index::class_id`]; 0: not compared, as
    /// anything `local`): versions, tombstones included, are counted in the
    /// per-(kind, origin, class) digest that peers compare.
    pub class: u16,
}

#[derive(Default)]
struct KindIndex {
    /// Point lookups: O(1), no string comparisons along a tree path.
    primary: HashMap<Arc<str>, IndexEntry>,
    /// The same ids in order, for paging (shares the `Arc<str>`s).
    order: BTreeSet<Arc<str>>,
    /// field → value → ids.
    terms: HashMap<&'static str, HashMap<Box<str>, BTreeSet<Arc<str>>>>,
    /// With [`Index::track_terms`]: the terms each live id is indexed with.
    terms_of: HashMap<Arc<str>, Vec<(&'static str, String)>>,
    live: usize,
}

impl KindIndex {
    fn unindex(&mut self, id: &str, terms: &[(&'static str, String)]) {
        for (field, value) in terms {
            let Some(vals) = self.terms.get_mut(field) else {
                continue;
            };
            if let Some(set) = vals.get_mut(value.as_str()) {
                set.remove(id);
                if set.is_empty() {
                    vals.remove(value.as_str());
                }
            }
        }
    }
}

/// One page of a query.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub ids: Vec<String>,
    /// Set when more results follow the last id.
    pub more: bool,
}

/// One origin's stored versions: seq → (kind, id).
type SeqMap = std::collections::BTreeMap<u64, (Arc<str>, Arc<str>)>;

/// The indexes of all kinds.
#[derive(Default)]
pub struct Index {
    kinds: HashMap<String, KindIndex>,
    /// Per origin, the stored versions (tombstones included) by sequence
    /// number: what a peer asking "origin O after seq N" is sent.
    by_origin_seq: HashMap<Arc<str>, SeqMap>,
    /// Per (kind, origin): order-independent digest of the live, wholly public
    /// versions stored (each element is the version's byte digest, identical
    /// at every center holding that version).
    class_digests: HashMap<(Arc<str>, Arc<str>, u16), regmesh_proto::digest::SetDigest>,
    /// Visibility classes by id (id 0: none).
    classes: Vec<Arc<str>>,
    class_ids: HashMap<Arc<str>, u16>,
    /// Kind names and origins, one shared copy each (a million entries of
    /// the same few strings would otherwise each allocate their own).
    interned: std::collections::HashSet<Arc<str>>,
    /// Keep each id's terms, for callers that update an id without the
    /// version it replaces (a process following another's writes).
    track_terms: bool,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// An index that also remembers each live id's terms
    /// ([`Index::terms_of`]), at the memory cost of one copy of them.
    pub fn track_terms() -> Self {
        Index {
            track_terms: true,
            ..Self::default()
        }
    }

    /// The terms `(kind, id)` is indexed with, if tracked
    /// ([`Index::track_terms`]); empty for an absent id or a tombstone.
    pub fn terms_of(&self, kind: &str, id: &str) -> Vec<(&'static str, String)> {
        self.kinds
            .get(kind)
            .and_then(|k| k.terms_of.get(id))
            .cloned()
            .unwrap_or_default()
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(a.clone());
        a
    }

    /// Records `(kind, id)` as it now is. `old_terms` are the terms it was
    /// indexed with before (empty if it was absent or a tombstone); `new_terms`
    /// the terms of the new live version (ignored for tombstones).
    pub fn upsert(
        &mut self,
        kind: &str,
        id: &str,
        entry: IndexEntry,
        old_terms: &[(&'static str, String)],
        new_terms: &[(&'static str, String)],
    ) {
        let mut entry = entry;
        entry.origin = self.intern(&entry.origin);
        let kind_name = self.intern(kind);
        let k = self.kinds.entry(kind.to_string()).or_default();
        if let Some(old) = k.primary.get(id) {
            if let Some(m) = self.by_origin_seq.get_mut(&old.origin) {
                m.remove(&old.seq);
            }
            if old.class != 0 {
                if let Some(d) = self
                    .class_digests
                    .get_mut(&(kind_name.clone(), old.origin.clone(), old.class))
                {
                    d.remove(&old.digest);
                }
            }
        }
        if entry.class != 0 {
            self.class_digests
                .entry((kind_name.clone(), entry.origin.clone(), entry.class))
                .or_default()
                .add(&entry.digest);
        }
        let (key, was_live) = match k.primary.get_key_value(id) {
            Some((key, e)) => (key.clone(), !e.deleted),
            None => {
                let key = Arc::<str>::from(id);
                k.order.insert(key.clone());
                (key, false)
            }
        };
        k.unindex(id, old_terms);
        let live = !entry.deleted;
        if live {
            for t in new_terms {
                k.terms
                    .entry(t.0)
                    .or_default()
                    .entry(t.1.as_str().into())
                    .or_default()
                    .insert(key.clone());
            }
        }
        if self.track_terms {
            if live {
                k.terms_of.insert(key.clone(), new_terms.to_vec());
            } else {
                k.terms_of.remove(id);
            }
        }
        k.live = k.live + live as usize - was_live as usize;
        self.by_origin_seq
            .entry(entry.origin.clone())
            .or_default()
            .insert(entry.seq, (kind_name, key.clone()));
        k.primary.insert(key, entry);
    }

    /// The id of visibility class `class` (see `regmesh_proto::policy::
    /// class_of`); 0 for none. At most 65,535 classes; beyond, 0 (such
    /// records are simply not compared).
    pub fn class_id(&mut self, class: Option<&str>) -> u16 {
        let Some(c) = class else { return 0 };
        if let Some(id) = self.class_ids.get(c) {
            return *id;
        }
        if self.classes.is_empty() {
            self.classes.push(Arc::from(""));
        }
        let Ok(id) = u16::try_from(self.classes.len()) else {
            return 0;
        };
        let c: Arc<str> = Arc::from(c);
        self.classes.push(c.clone());
        self.class_ids.insert(c, id);
        id
    }

    /// Digests of `origin`'s stored versions (tombstones included), per
    /// (kind, visibility class).
    pub fn class_digests(&self, origin: &str) -> Vec<(String, String, regmesh_proto::digest::SetDigest)> {
        let mut v: Vec<_> = self
            .class_digests
            .iter()
            .filter(|((_, o, _), d)| &**o == origin && d.count() > 0)
            .map(|((k, _, c), d)| (k.to_string(), self.classes[*c as usize].to_string(), *d))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Stored versions of `origin` with seq above `after`, in seq order, at
    /// most `limit`: `(seq, kind, id)`.
    pub fn by_origin_after(&self, origin: &str, after: u64, limit: usize) -> Vec<(u64, String, String)> {
        self.by_origin_seq.get(origin).map_or_else(Vec::new, |m| {
            m.range(after.saturating_add(1)..)
                .take(limit)
                .map(|(s, (k, i))| (*s, k.to_string(), i.to_string()))
                .collect()
        })
    }

    /// Forgets `(kind, id)` entirely (a purged tombstone, or a removed live
    /// record whose `old_terms` are given).
    pub fn remove(&mut self, kind: &str, id: &str, old_terms: &[(&'static str, String)]) {
        let Some(k) = self.kinds.get_mut(kind) else { return };
        k.unindex(id, old_terms);
        k.terms_of.remove(id);
        if let Some(e) = k.primary.remove(id) {
            if let Some(m) = self.by_origin_seq.get_mut(&e.origin) {
                m.remove(&e.seq);
            }
            if e.class != 0 {
                if let Some(d) = self
                    .class_digests
                    .get_mut(&(Arc::from(kind), e.origin.clone(), e.class))
                {
                    d.remove(&e.digest);
                }
            }
            k.order.remove(id);
            if !e.deleted {
                k.live -= 1;
            }
        }
    }

    pub fn get(&self, kind: &str, id: &str) -> Option<&IndexEntry> {
        self.kinds.get(kind)?.primary.get(id)
    }

    /// Live records of a kind.
    pub fn live(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, |k| k.live)
    }

    /// All entries, tombstones included.
    pub fn entries(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, |k| k.primary.len())
    }

    /// Live ids of `kind` matching every `(field, value)` filter, in id order,
    /// strictly after `after`, at most `limit`.
    pub fn query(&self, kind: &str, filters: &[(&str, &str)], after: Option<&str>, limit: usize) -> Page {
        let Some(k) = self.kinds.get(kind) else {
            return Page::default();
        };
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut ids = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        if filters.is_empty() {
            for id in k.order.range::<str, _>((lower, Bound::Unbounded)) {
                if k.primary.get(id).is_none_or(|e| e.deleted) {
                    continue;
                }
                if ids.len() == limit {
                    more = true;
                    break;
                }
                ids.push(id.to_string());
            }
            return Page { ids, more };
        }
        let mut sets = Vec::with_capacity(filters.len());
        for (f, v) in filters {
            match k.terms.get(f).and_then(|vals| vals.get(*v)) {
                Some(s) => sets.push(s),
                None => return Page::default(),
            }
        }
        sets.sort_by_key(|s| s.len());
        let (first, rest) = sets.split_first().expect("filters not empty");
        for id in first.range::<str, _>((lower, Bound::Unbounded)) {
            if rest.iter().all(|s| s.contains(id)) {
                if ids.len() == limit {
                    more = true;
                    break;
                }
                ids.push(id.to_string());
            }
        }
        Page { ids, more }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(deleted: bool) -> IndexEntry {
        IndexEntry {
            origin: Arc::from("c1"),
            seq: 0,
            class: 1,
            digest: [0; 32],
            deleted,
        }
    }

    fn t(f: &'static str, v: &str) -> (&'static str, String) {
        (f, v.to_string())
    }

    #[test]
    fn filters_intersect_and_page() {
        let mut ix = Index::new();
        for i in 0..10 {
            let mut terms = vec![t("status", if i % 2 == 0 { "online" } else { "offline" })];
            if i % 3 == 0 {
                terms.push(t("capability", "translate"));
            }
            ix.upsert("agent", &format!("a{i}"), e(false), &[], &terms);
        }
        assert_eq!(ix.live("agent"), 10);
        let p = ix.query("agent", &[("status", "online"), ("capability", "translate")], None, 10);
        assert_eq!(p.ids, vec!["a0", "a6"]);
        let p = ix.query("agent", &[("status", "online")], None, 2);
        assert_eq!((p.ids.clone(), p.more), (vec!["a0".to_string(), "a2".into()], true));
        let p = ix.query("agent", &[("status", "online")], Some("a2"), 10);
        assert_eq!(p.ids, vec!["a4", "a6", "a8"]);
        assert!(!p.more);
        assert!(ix.query("agent", &[("status", "sleeping")], None, 10).ids.is_empty());
        assert!(ix.query("other", &[], None, 10).ids.is_empty());
    }

    #[test]
    fn class_digests_follow_versions_per_class() {
        let mut ix = Index::new();
        let public = ix.class_id(Some("public"));
        let group = ix.class_id(Some("authorized:g1"));
        assert_eq!(ix.class_id(Some("public")), public, "interned once");
        assert_eq!(ix.class_id(None), 0);
        let entry = |d: u8, class: u16, deleted: bool| IndexEntry {
            digest: [d; 32],
            deleted,
            origin: Arc::from("c1"),
            seq: d as u64,
            class,
        };
        ix.upsert("agent", "a", entry(1, public, false), &[], &[]);
        ix.upsert("agent", "b", entry(2, 0, false), &[], &[]);
        ix.upsert("agent", "c", entry(5, group, false), &[], &[]);
        let one = ix.class_digests("c1");
        assert_eq!(one.len(), 2, "{one:?}");
        assert_eq!((one[0].1.as_str(), one[0].2.count()), ("authorized:g1", 1));
        assert_eq!(
            (one[1].1.as_str(), one[1].2.count()),
            ("public", 1),
            "class 0 is not counted"
        );
        ix.upsert("agent", "a", entry(3, public, false), &[], &[]);
        let replaced = ix.class_digests("c1")[1].2;
        assert_eq!(replaced.count(), 1);
        assert_ne!(replaced, one[1].2);
        ix.upsert("agent", "a", entry(4, public, true), &[], &[]);
        assert_eq!(ix.class_digests("c1")[1].2.count(), 1, "a tombstone counts");
        ix.remove("agent", "a", &[]);
        assert_eq!(ix.class_digests("c1").len(), 1, "a purged tombstone does not");
        // Order does not matter: the same versions in another order agree.
        let mut other = Index::new();
        let g = other.class_id(Some("authorized:g1"));
        other.upsert("agent", "c", entry(5, g, false), &[], &[]);
        other.upsert("agent", "b", entry(2, 0, false), &[], &[]);
        let p = other.class_id(Some("public"));
        other.upsert("agent", "a", entry(4, p, true), &[], &[]);
        other.remove("agent", "a", &[]);
        assert_eq!(other.class_digests("c1"), ix.class_digests("c1"));
    }

    #[test]
    fn updates_move_terms_and_tombstones_hide() {
        let mut ix = Index::new();
        ix.upsert("agent", "a", e(false), &[], &[t("status", "online")]);
        ix.upsert(
            "agent",
            "a",
            e(false),
            &[t("status", "online")],
            &[t("status", "offline")],
        );
        assert!(ix.query("agent", &[("status", "online")], None, 10).ids.is_empty());
        assert_eq!(ix.query("agent", &[("status", "offline")], None, 10).ids, vec!["a"]);
        ix.upsert("agent", "a", e(true), &[t("status", "offline")], &[]);
        assert_eq!(ix.live("agent"), 0);
        assert_eq!(ix.entries("agent"), 1);
        assert!(ix.query("agent", &[], None, 10).ids.is_empty());
        assert!(ix.query("agent", &[("status", "offline")], None, 10).ids.is_empty());
        ix.remove("agent", "a", &[]);
        assert_eq!(ix.entries("agent"), 0);
        assert!(ix.get("agent", "a").is_none());
    }

    /// A purged tombstone and a new create of its id (what one writer batch
    /// may hold): every structure holds the new version and nothing of the old.
    #[test]
    fn remove_then_upsert_of_one_id_is_consistent() {
        let mut ix = Index::new();
        let public = ix.class_id(Some("public"));
        let entry = |seq: u64, deleted: bool| IndexEntry {
            digest: [seq as u8; 32],
            deleted,
            origin: Arc::from("c1"),
            seq,
            class: public,
        };
        ix.upsert("agent", "a", entry(1, false), &[], &[t("status", "online")]);
        ix.upsert("agent", "a", entry(2, true), &[t("status", "online")], &[]);
        ix.remove("agent", "a", &[]);
        ix.upsert("agent", "a", entry(3, false), &[], &[t("status", "offline")]);
        assert_eq!((ix.live("agent"), ix.entries("agent")), (1, 1));
        assert_eq!(ix.get("agent", "a").map(|e| e.seq), Some(3));
        assert_eq!(ix.query("agent", &[], None, 10).ids, vec!["a"]);
        assert_eq!(ix.query("agent", &[("status", "offline")], None, 10).ids, vec!["a"]);
        assert!(ix.query("agent", &[("status", "online")], None, 10).ids.is_empty());
        let seqs: Vec<u64> = ix.by_origin_after("c1", 0, 10).into_iter().map(|(s, _, _)| s).collect();
        assert_eq!(seqs, vec![3], "old seqs left in the origin map");
        assert_eq!(ix.class_digests("c1")[0].2.count(), 1, "one version counted");
    }
}
