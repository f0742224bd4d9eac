//! The wire and the faulty members: partitions, loss, duplication and jitter on every message,
//! and what each Byzantine role sends in place of an honest member's output.

use super::*;

impl Cluster {
    pub(super) fn cut_off(&self, peer: Peer) -> bool {
        !self.healed()
            && self
                .index_of(peer)
                .is_some_and(|i| i >= self.members.len() - self.faults.partitioned)
    }

    /// Puts a message on the wire, subject to the faults.
    pub(super) fn post(&mut self, from: Peer, to: Peer, bytes: Vec<u8>) {
        if self.cut_off(from) || self.cut_off(to) {
            return;
        }
        let healed = self.healed();
        if !healed && self.rng.chance(self.faults.loss) {
            return;
        }
        let copies = if !healed && self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.rng.below(self.faults.jitter.as_micros().max(1) as u64);
            let at = self.now + BASE_DELAY + Duration::from_micros(jitter);
            self.seq += 1;
            self.flight.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                bytes: bytes.clone(),
            }));
        }
    }

    /// Sends what member `index` has to send, through its role's filter.
    pub(super) fn collect(&mut self, index: usize) {
        let mut out = Vec::new();
        let role = match &mut self.nodes[index] {
            Node::Live(member, role) => {
                while let Some(transmit) = member.poll_transmit() {
                    out.push(transmit);
                }
                *role
            }
            Node::Silent | Node::Down { .. } => return,
        };
        self.send_out(index, role, out);
    }

    pub(super) fn send_out(&mut self, index: usize, role: Role, out: Vec<Transmit>) {
        let from = Peer::Member(self.members[index]);
        for transmit in out {
            if role == Role::Honest {
                self.check_honest(index, &transmit);
            }
            for (to, bytes) in self.misbehave(index, role, transmit) {
                self.post(from, to, bytes);
            }
        }
    }

    /// What an honest member sends: never two votes for one slot, never two proposals for one
    /// round (a proposal may leave before its commit), never a reply for an id its store lacks.
    fn check_honest(&mut self, index: usize, transmit: &Transmit) {
        match schema::decode(&transmit.bytes) {
            Ok(Message::Vote(vote)) => {
                let body = &vote.body;
                let slot = (body.voter, body.height, body.round, body.kind);
                let first = *self.signed_votes.entry(slot).or_insert(body.value);
                assert_eq!(
                    first, body.value,
                    "an honest member signed two votes for one slot"
                );
            }
            Ok(Message::Proposal(proposal)) => {
                let body = &proposal.body;
                let slot = (body.proposer, body.height, body.round);
                let id = body.batch.id();
                let first = *self.signed_proposals.entry(slot).or_insert(id);
                assert_eq!(
                    first, id,
                    "an honest member proposed two batches in one round"
                );
            }
            Ok(Message::Reply(reply)) => {
                let request = self
                    .clients
                    .iter()
                    .map(|c| &c.request)
                    .find(|r| r.digest() == reply.body.digest);
                if let Some(request) = request {
                    let stored = self.stores[index].lookup(&request.key, request.salt);
                    assert_eq!(
                        stored.map(|id| id.node_id),
                        Some(reply.body.node_id),
                        "a reply left before its id was on disk"
                    );
                }
            }
            _ => {}
        }
    }

    /// What a member of `role` sends in place of `transmit`.
    pub(super) fn misbehave(
        &mut self,
        index: usize,
        role: Role,
        transmit: Transmit,
    ) -> Vec<(Peer, Vec<u8>)> {
        let Transmit { to, bytes } = transmit;
        let mut out = vec![(to, bytes.clone())];
        let Ok(message) = schema::decode(&bytes) else {
            return out;
        };
        let key = self.keys[index].clone();
        let second_half = self
            .index_of(to)
            .is_some_and(|i| i * 2 >= self.members.len());
        match (role, message) {
            (Role::Equivocator | Role::VoteEquivocator, Message::Proposal(proposal))
                if second_half =>
            {
                let mut body = proposal.body.clone();
                if body.batch.entries.pop().is_none() {
                    body.pol_round = Some(body.round.wrapping_add(7));
                }
                out[0].1 = schema::encode(&Message::Proposal(sign(&key, &self.network, body)));
            }
            (Role::VoteEquivocator, Message::Vote(vote))
                if second_half && vote.body.value.is_some() =>
            {
                let mut body = vote.body.clone();
                body.value = None;
                out[0].1 = schema::encode(&Message::Vote(sign(&key, &self.network, body)));
            }
            (Role::Forger, Message::Vote(vote)) => {
                // In another member's name, with our signature: must fail verification.
                let mut forged = vote.clone();
                forged.body.voter = self.members[(index + 1) % self.members.len()];
                out.push((to, schema::encode(&Message::Vote(forged))));
                // A garbage signature on our own vote for another value.
                let mut garbage = vote.clone();
                garbage.body.value = None;
                garbage.signature = Signature([7; 64]);
                out.push((to, schema::encode(&Message::Vote(garbage))));
                // Replay an old vote of anyone.
                if !self.seen_votes.is_empty() {
                    let pick = self.rng.below(self.seen_votes.len() as u64) as usize;
                    let old = self.seen_votes[pick].clone();
                    out.push((to, schema::encode(&Message::Vote(old))));
                }
            }
            (Role::Forger, Message::Sighting { request, sighting }) => {
                // Its own sighting under a garbage signature first: members hold it unchecked
                // until a batch needs it, then drop it and count it.
                let mut garbage = sighting.clone();
                garbage.signature = Signature([9; 64]);
                let forged = Message::Sighting {
                    request,
                    sighting: garbage,
                };
                out.insert(0, (to, schema::encode(&forged)));
            }
            (Role::Forger, Message::Proposal(proposal))
                if !proposal.body.batch.entries.is_empty() =>
            {
                // A batch with a forged sighting, signed by the proposer: a nil prevote and a
                // bad_signature refusal at every honest member.
                let mut body = proposal.body.clone();
                if let Some(sighting) = body.batch.entries[0].sightings.last_mut() {
                    sighting.signature = Signature([9; 64]);
                }
                out[0].1 = schema::encode(&Message::Proposal(sign(&key, &self.network, body)));
            }
            (Role::Evictor, Message::Proposal(proposal)) => {
                let mut body = proposal.body.clone();
                let victim = self.members[(index + 1) % self.members.len()];
                body.batch.changes = vec![Change::Remove(victim)];
                out[0].1 = schema::encode(&Message::Proposal(sign(&key, &self.network, body)));
            }
            (Role::Forger, Message::Reply(reply)) => {
                // Signs a second id for the same request.
                let mut body = reply.body.clone();
                body.node_id.0[0] ^= 0xff;
                out[0].1 = schema::encode(&Message::Reply(sign(&key, &self.network, body)));
            }
            _ => {}
        }
        out
    }
}
