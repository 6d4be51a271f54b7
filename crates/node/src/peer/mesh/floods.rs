//! Floods in the mesh runtime: the flooder that reads this center's own
//! committed changes from the change log, the per-peer senders draining
//! their bounded queues, the fan-out of relayed floods, and the receipt of
//! a peer's flood (dedup, replay, apply, relay). The I/O only: dedup,
//! targets and relay rules are `regmesh_proto`'s. Must never block on a
//! slow peer (its queue drops and counts instead) or relay what it did not
//! accept.

use super::{encode_records, Mesh, Outgoing, Peer, FLOODS_IN_FLIGHT, FLOOD_BATCH_MAX};
use crate::center::{Verified, WriteError};
use hyper::{Method, StatusCode};
use regmesh_core::Record;
use regmesh_proto::dedup::Seen;
use regmesh_proto::flood;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

impl Mesh {
    /// Sends queued floods to one peer, up to [`FLOODS_IN_FLIGHT`] at once
    /// (merging makes their order of arrival irrelevant), leaving the rest of
    /// the peer's connections for votes and beats.
    pub(super) async fn send_loop(self: Arc<Self>, peer: Arc<Peer>, mut rx: mpsc::Receiver<Outgoing>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(FLOODS_IN_FLIGHT));
        while let Some(m) = rx.recv().await {
            let Ok(slot) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let mut headers = vec![
                    ("drip-node-id", m.initiator.clone()),
                    ("drip-node-counter", m.counter.to_string()),
                    ("drip-node-counter-reset", m.reset.to_string()),
                    ("drip-transaction-type", "update".to_string()),
                ];
                if let Some(f) = m.seq_from {
                    headers.push(("regmesh-seq-from", f.to_string()));
                }
                headers.extend(me.record_format_header(&peer));
                match peer
                    .client
                    .call(&me.center, Method::POST, "/commit", &headers, Some(m.body))
                    .await
                {
                    Ok(a) if a.status == StatusCode::OK => {
                        peer.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(a) => {
                        peer.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.cfg.id, status = %a.status, body = %String::from_utf8_lossy(&a.body), "flood refused");
                    }
                    Err(e) => {
                        peer.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %peer.cfg.id, "flood failed: {e}");
                    }
                }
            });
        }
    }

    /// Queues `records` (of initiator/counter) to every OPERATIONAL peer but
    /// `except`, each getting only what its policy allows.
    fn fan_out(
        &self,
        initiator: &str,
        (counter, reset, seq_from): (u64, bool, Option<u64>),
        records: &[Record],
        except: Option<&str>,
    ) -> usize {
        let state = self.node_state();
        if !state.propagates() {
            return 0;
        }
        let relayed = initiator != self.me;
        // Computed once per message, then judged per peer.
        let parts: Vec<Vec<regmesh_core::Visibility>> = records.iter().map(|r| self.parts_of(r)).collect();
        let mut queued = 0;
        for peer in &self.peers {
            if !flood::sends_to(
                state,
                &peer.cfg.id,
                &peer.life.lock().expect("life lock"),
                initiator,
                except,
            ) {
                continue;
            }
            let allowed: Vec<&Record> = records
                .iter()
                .zip(&parts)
                .filter(|(r, p)| flood::allowed(&peer.policy, r, p, relayed))
                .map(|(r, _)| r)
                .collect();
            if !flood::worth_sending(allowed.len(), seq_from.is_some()) {
                continue;
            }
            let m = Outgoing {
                initiator: initiator.to_string(),
                counter,
                reset,
                seq_from,
                body: encode_records(allowed.into_iter()),
            };
            match peer.queue.try_send(m) {
                Ok(()) => queued += 1,
                Err(_) => {
                    peer.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        queued
    }

    pub(super) async fn flood_loop(self: Arc<Self>) {
        let mut rx = self.center.subscribe();
        let mut last = self.center.head();
        loop {
            // Any event (or a lag notice) means: read the log from `last`.
            match rx.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            loop {
                let evs = match self.center.changes_after(last, FLOOD_BATCH_MAX) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("flooder cannot read the change log: {e}");
                        break;
                    }
                };
                let Some(end) = evs.last().map(|e| e.no) else { break };
                if evs.first().is_some_and(|e| e.no > last + 1) {
                    tracing::warn!(
                        from = last + 1,
                        to = evs[0].no - 1,
                        "changes trimmed before they were flooded"
                    );
                }
                last = end;
                let own: Vec<Record> = evs
                    .into_iter()
                    .map(|e| e.record)
                    .filter(|r| r.origin == self.me)
                    .collect();
                if own.is_empty() {
                    continue;
                }
                // DRiP-Node-Counter: the highest seq in the message. Our seq
                // is persisted with the records, so counters survive restarts.
                let counter = own.iter().map(|r| r.seq).max().expect("not empty");
                // The message covers every own seq from its first to its last:
                // all own changes between them are in it (or filtered out
                // for the peer, which then may not see them anyway).
                let from = own.iter().map(|r| r.seq).min().expect("not empty");
                self.stats.floods_initiated.fetch_add(1, Ordering::Relaxed);
                self.fan_out(&self.me.clone(), (counter, false, Some(from)), &own, None);
            }
        }
    }

    /// A flood arrived from peer `sender`: verify, dedup, apply, relay.
    /// Returns (duplicate, applied).
    pub async fn receive(
        &self,
        sender: &str,
        initiator: &str,
        (counter, reset, seq_from): (u64, bool, Option<u64>),
        records: Vec<Record>,
    ) -> Result<(bool, usize), WriteError> {
        self.stats.floods_received.fetch_add(1, Ordering::Relaxed);
        if !self.node_state().accepts_updates() {
            return Err(WriteError::Inactive);
        }
        // Our own message come back by another path, or a copy already seen:
        // skip it before spending signature checks on it.
        let peeked = if initiator == self.me {
            Seen::Duplicate
        } else {
            self.windows
                .lock()
                .expect("windows lock")
                .get(initiator)
                .map_or(Seen::New, |w| w.peek(counter, reset))
        };
        if peeked == Seen::Duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok((true, 0));
        }
        let verified: Verified = self.center.verify_remote(records);
        if !verified.refused().is_empty() {
            // What passed is merged (idempotent); the message is not marked
            // seen, relayed, or counted toward the watermark, so a refused
            // record is never skipped silently. `apply_verified` answers
            // `Refused` whenever something was refused.
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return self.center.apply_verified(verified).await.map(|n| (false, n));
        }
        // The records' own signatures raise the origin's ceiling first.
        self.witness_records(verified.records());
        if initiator != sender && !self.ceilings.lock().expect("ceilings lock").backs(initiator, counter) {
            // A relay's counter above anything the origin has shown: what it
            // carried is applied, but it marks no window, moves no
            // watermark and is not relayed (proto `Ceilings::backs`).
            self.stats.unbacked.fetch_add(1, Ordering::Relaxed);
            return self.center.apply_verified(verified).await.map(|n| (false, n));
        }
        // Recorded only now, so an unverifiable message cannot mark a counter
        // as seen and shadow the genuine one.
        let seen = {
            let mut w = self.windows.lock().expect("windows lock");
            w.entry(initiator.to_string()).or_default().observe(counter, reset)
        };
        if seen == Seen::Duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok((true, 0));
        }
        let records = verified.records().to_vec();
        let applied = self.center.apply_verified(verified).await?;
        if initiator == sender {
            // The origin's own message: its counter is its own word.
            self.ceilings.lock().expect("ceilings lock").witness(initiator, counter);
        }
        if let Some(from) = seq_from {
            self.advance(initiator, from, counter);
        }
        // Too old to tell whether it was seen: applied (idempotent), not relayed.
        let n = if flood::relays(seen) {
            self.fan_out(initiator, (counter, reset, seq_from), &records, Some(sender))
        } else {
            0
        };
        self.stats.relayed.fetch_add(n as u64, Ordering::Relaxed);
        Ok((false, applied))
    }
}
