//! Crashes at failpoints (issue 14 point 8): a member stops right after a named step, comes
//! back from its store after its down time, and must hold the same decisions and ids.

use super::*;
use weft::consensus::store::Store;

impl Cluster {
    /// Crashes a member at a failpoint as `crashes` says.
    pub(crate) fn crash_at(&mut self, crashes: Crashes) {
        self.crashes = Some(crashes);
    }

    /// Between a member's input and its commit: at [`Failpoint::BeforeProposalSynced`], sends
    /// what it may send before the commit and crashes it if that held a proposal (the commit
    /// never happens). True when it crashed.
    pub(super) fn crash_before_sync(&mut self, index: usize) -> bool {
        let armed = self.crashes.is_some_and(|p| {
            p.member == index && p.times > 0 && p.at == Failpoint::BeforeProposalSynced
        });
        if !armed {
            return false;
        }
        let Node::Live(member, role) = &mut self.nodes[index] else {
            return false;
        };
        let role = *role;
        let mut out = Vec::new();
        while let Some(transmit) = member.poll_transmit() {
            out.push(transmit);
        }
        let proposal = out
            .iter()
            .any(|t| matches!(schema::decode(&t.bytes), Ok(Message::Proposal(_))));
        // The decision this call made is lost with its commit: what must survive is what the
        // store holds (the last stored height's ids are final only with the next decision).
        let stored = self.stores[index]
            .clone()
            .load()
            .expect("loads")
            .decisions
            .len();
        let mut log = member.log().heights().to_vec();
        log.truncate(stored.saturating_sub(1));
        self.send_out(index, role, out);
        if !proposal {
            return false;
        }
        let plan = self.crashes.as_mut().expect("a plan");
        if plan.skip > 0 {
            plan.skip -= 1;
            return false;
        }
        plan.times -= 1;
        plan.skip = 1;
        let down = plan.down;
        self.nodes[index] = Node::Down {
            until: self.now + down,
            role,
            log,
        };
        self.crashed += 1;
        true
    }

    /// After a call into member `index`: crash it if a failpoint is hit, else send its output.
    pub(super) fn after_call(&mut self, index: usize) {
        let commits = self.stores[index].commits();
        let fresh = commits != self.commits[index];
        self.commits[index] = commits;
        let Some(plan) = self
            .crashes
            .filter(|p| p.member == index && p.times > 0 && fresh)
        else {
            return self.collect(index);
        };
        let last = self.stores[index].last_commit();
        let Node::Live(member, role) = &mut self.nodes[index] else {
            return;
        };
        let role = *role;
        let mut out = Vec::new();
        while let Some(transmit) = member.poll_transmit() {
            out.push(transmit);
        }
        let is_reply = |t: &Transmit| matches!(t.to, Peer::Client(_));
        let hit = match plan.at {
            Failpoint::AfterVoteWritten | Failpoint::AfterVoteSent => !last.votes.is_empty(),
            Failpoint::AfterDecisionWritten => !last.decisions.is_empty(),
            Failpoint::BeforeReply => !last.ids.is_empty() && out.iter().any(is_reply),
            Failpoint::BeforeProposalSynced => false,
        };
        let crash = hit && plan.skip == 0;
        let log = member.log().heights().to_vec();
        if hit {
            let plan = self.crashes.as_mut().expect("a plan");
            plan.skip = plan.skip.saturating_sub(1);
        }
        let send: Vec<Transmit> = match (crash, plan.at) {
            (false, _) | (true, Failpoint::AfterVoteSent) => out,
            (true, Failpoint::BeforeReply) => out.into_iter().filter(|t| !is_reply(t)).collect(),
            (true, _) => Vec::new(),
        };
        self.send_out(index, role, send);
        if crash {
            self.nodes[index] = Node::Down {
                until: self.now + plan.down,
                role,
                log,
            };
            self.crashed += 1;
            let plan = self.crashes.as_mut().expect("a plan");
            plan.times -= 1;
            plan.skip = 1;
        }
    }

    /// Restarts crashed members whose time has come, from their stores.
    pub(super) fn restart_due(&mut self) {
        for index in 0..self.nodes.len() {
            let Node::Down { until, role, log } = &self.nodes[index] else {
                continue;
            };
            if *until > self.now {
                continue;
            }
            let (role, log) = (*role, log.clone());
            let member = Member::open(
                self.now,
                self.keys[index].clone(),
                self.config.clone(),
                self.stores[index].clone(),
            )
            .expect("a member reopens from its store")
            .with_policy(self.settings.0.clone())
            .with_membership(self.settings.1.clone());
            let mut member = member;
            member.set_wall_clock(self.start, WALL_START);
            assert_eq!(
                member.log().heights().get(..log.len()),
                Some(&log[..]),
                "a restarted member's decisions or ids changed"
            );
            self.nodes[index] = Node::Live(Box::new(member), role);
            self.commits[index] = self.stores[index].commits();
            self.collect(index);
        }
    }
}
