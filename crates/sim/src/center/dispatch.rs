//! A simulated center's receipt of peer messages: each arriving message
//! (HELLO, beats, floods, pull requests and answers, vote requests and
//! answers) handed to the concern that owns it, and small answers given in
//! place. Must never keep protocol state of its own; a message from an
//! unknown peer is ignored.

use super::{Center, Out};
use crate::msg::Msg;
use regmesh_proto::lifecycle::PeerState;
use regmesh_proto::version::{self, Versions};

impl Center {
    pub fn on_msg(&mut self, now: u64, from: usize, msg: Msg, out: &mut Vec<Out>) {
        let Some(pi) = self.peer_pos(from) else { return };
        let local = self.local(now);
        match msg {
            Msg::Hello(hello) => {
                let verdict = version::judge_hello(Versions::BUILD, &hello, true);
                if verdict.is_ok() {
                    // It may have lost its view of our marks: whole map next.
                    self.peers[pi].acked.clear();
                }
                out.push(Out::Send {
                    to: from,
                    msg: Msg::HelloOk(version::hello_answer(&self.id, Versions::BUILD, &verdict)),
                })
            }
            Msg::HelloOk(answer) => {
                let status = if answer.accepted { 200 } else { 409 };
                let agreed = version::conclude_hello(Versions::BUILD, status, &answer).is_ok();
                if agreed && self.peers[pi].life.state() <= PeerState::Known {
                    self.peers[pi].life.hello_answered(local);
                    self.peers[pi].reachable = true;
                    self.peers[pi].acked.clear();
                    // The first heartbeat goes at once, whole.
                    let (body, sent) = self.beat_body(pi, true);
                    self.beat_no += 1;
                    self.peers[pi].beats_sent += 1;
                    self.peers[pi].awaiting = Some((self.beat_no, sent));
                    out.push(Out::Send {
                        to: from,
                        msg: Msg::Beat { n: self.beat_no, body },
                    });
                    self.reassess(now);
                }
            }
            Msg::Beat { n, body } => {
                let (answer, _) = self.beat_body(pi, false);
                out.push(Out::Send {
                    to: from,
                    msg: Msg::BeatOk { n, body: answer },
                });
                self.beat_from(now, pi, body, out);
            }
            Msg::BeatOk { n, body } => {
                let p = &mut self.peers[pi];
                if p.awaiting.as_ref().is_some_and(|(a, _)| *a == n) {
                    let (_, sent) = p.awaiting.take().expect("awaiting");
                    p.acked = sent;
                    p.reachable = true;
                    p.life.beat_acked(local);
                    self.beat_from(now, pi, body, out);
                    self.reassess(now);
                }
            }
            Msg::Flood(flood) => self.on_flood(now, from, flood, out),
            Msg::PullReq { call, request } => {
                let page = self.serve_pull(pi, &request);
                out.push(Out::Send {
                    to: from,
                    msg: Msg::PullAnswer { call, page },
                });
            }
            Msg::PullAnswer { call, page } => self.on_pull_answer(now, pi, call, page, out),
            Msg::VoteReq { vote, request } => self.on_vote_req(now, from, vote, request, out),
            Msg::VoteRefused { vote } => self.on_vote_refused(now, from, vote, out),
            Msg::VoteAnswer { vote, answer } => self.on_vote_answer(now, from, vote, answer, out),
        }
    }
}
