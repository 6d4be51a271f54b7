//! A simulated center's receipt of peer messages: each arriving message
//! (HELLO, beats, floods, pull requests and answers, vote requests and
//! answers) handed to the concern that owns it, and small answers given in
//! place. Must never keep protocol state of its own; a message from an
//! unknown peer is ignored.

use super::{Center, Out};
use crate::msg::Msg;

impl Center {
    pub fn on_msg(&mut self, now: u64, from: usize, msg: Msg, out: &mut Vec<Out>) {
        let Some(pi) = self.peer_pos(from) else { return };
        match msg {
            Msg::Hello { .. } | Msg::HelloOk { .. } | Msg::Beat { .. } | Msg::BeatOk { .. } => {
                self.on_link_msg(now, pi, msg, out)
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
