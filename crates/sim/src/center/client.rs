//! A simulated center's client operations: writes of its own records
//! (durable before acknowledged) and the ownership checks they need. Must
//! never write a new id without a granted vote (that is `votes`).

use super::{body, body_n, Center, Change, ClientOp, Note, Out};
use crate::msg::Key;
use regmesh_core::{Record, Visibility};

impl Center {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_own(
        &mut self,
        now: u64,
        kind: &str,
        id: &str,
        body: String,
        expires_at_ms: Option<u64>,
        visibility: Visibility,
        deleted: bool,
        out: &mut Vec<Out>,
    ) -> Record {
        let local = self.local(now);
        self.own_seq += 1;
        let r = Record {
            kind: kind.to_string(),
            id: id.to_string(),
            origin: self.id.clone(),
            version: self.hlc.tick(local),
            seq: self.own_seq,
            expires_at_ms,
            visibility,
            deleted,
            body,
            sig: [0; 64],
        };
        // Own writes are durable before they are acknowledged.
        self.store.put(r.clone(), true);
        self.last_flush = now;
        self.changes
            .push(((r.kind.clone(), r.id.clone()), Change::Put(r.clone())));
        out.push(Out::Note(Note::Acked(r.clone())));
        self.flood_own(now, std::slice::from_ref(&r), out);
        r
    }

    pub fn client(&mut self, now: u64, op: ClientOp, out: &mut Vec<Out>) {
        let refuse = |out: &mut Vec<Out>, key: &Key, why: &str| {
            out.push(Out::Note(Note::Refused {
                key: key.clone(),
                why: why.to_string(),
            }))
        };
        if !self.up {
            return;
        }
        let local = self.local(now);
        let lease = self.settings.lease_ms;
        if !self.state.accepts_updates() {
            let key = match &op {
                ClientOp::Create { key, .. }
                | ClientOp::Update { key }
                | ClientOp::Delete { key }
                | ClientOp::Heartbeat { key } => key.clone(),
            };
            return refuse(out, &key, "inactive");
        }
        match op {
            ClientOp::Create { key, visibility } => self.create(now, key, visibility, out),
            ClientOp::Update { key } | ClientOp::Heartbeat { key } | ClientOp::Delete { key }
                if !self.owns_live(&key) =>
            {
                refuse(out, &key, "not a live record of this center")
            }
            ClientOp::Update { key } => {
                let r = self.store.get(&key).cloned().expect("owned");
                let b = body(body_n(&r.body) + 1, r.body.contains("online"));
                self.write_own(now, &key.0, &key.1, b, r.expires_at_ms, r.visibility, false, out);
            }
            ClientOp::Heartbeat { key } => {
                let r = self.store.get(&key).cloned().expect("owned");
                let b = body(body_n(&r.body) + 1, true);
                self.write_own(now, &key.0, &key.1, b, Some(local + lease), r.visibility, false, out);
            }
            ClientOp::Delete { key } => {
                let r = self.store.get(&key).cloned().expect("owned");
                self.write_own(now, &key.0, &key.1, "{}".into(), None, r.visibility, true, out);
            }
        }
    }

    fn owns_live(&self, key: &Key) -> bool {
        self.store.get(key).is_some_and(|r| r.origin == self.id && !r.deleted)
    }

    pub(super) fn live_owner(&self, key: &Key) -> Option<String> {
        self.store.get(key).filter(|r| !r.deleted).map(|r| r.origin.clone())
    }
}
