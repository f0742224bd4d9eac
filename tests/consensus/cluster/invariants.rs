//! What must hold after every step (honest logs agree, one id per request, certificates verify,
//! quotas hold, member-list chains verify), and what tests read off a finished run.

use super::*;

impl Cluster {
    pub(super) fn is_honest(&self, key: MemberKey) -> bool {
        self.members
            .iter()
            .position(|m| *m == key)
            .is_some_and(|i| matches!(self.nodes[i], Node::Live(_, Role::Honest | Role::Joiner)))
    }

    pub(crate) fn honest(&self) -> impl Iterator<Item = &Member> {
        self.nodes.iter().filter_map(|node| match node {
            Node::Live(member, Role::Honest | Role::Joiner) => Some(&**member),
            _ => None,
        })
    }

    /// Records every final id honest members hold.
    pub(super) fn observe(&mut self) {
        let mut found = Vec::new();
        for member in self.honest() {
            for decided in member.log().heights() {
                if let Some(ids) = &decided.ids {
                    for (request, id) in decided.requests.iter().zip(ids) {
                        found.push((request.idempotence_key(), *id));
                    }
                }
            }
        }
        for (key, id) in found {
            let first = *self.issued.entry(key).or_insert(id);
            assert_eq!(first, id, "two ids for one (key, salt)");
        }
    }

    /// The invariants, after every step.
    pub(crate) fn check(&self) {
        // Honest logs are prefixes of each other.
        let logs: Vec<Vec<_>> = self
            .honest()
            .map(|m| m.log().heights().iter().map(|d| d.batch).collect())
            .collect();
        for a in &logs {
            for b in &logs {
                let common = a.len().min(b.len());
                assert_eq!(a[..common], b[..common], "honest logs diverge");
            }
        }
        // A client holds an id only with a valid certificate, and it is the logged id.
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(certificate) = &client.certificate {
                if self
                    .verified
                    .borrow_mut()
                    .insert((c, MemberKey([0; 32]), 0))
                {
                    certificate::verify(&self.network, &client.roster, &certificate.replies)
                        .expect("a client holds an id without a valid certificate");
                }
                if let Some(id) = self.issued.get(&client.request.idempotence_key()) {
                    assert_eq!(
                        *id, certificate.node_id,
                        "a certificate names an id no log holds"
                    );
                }
            }
        }
        self.check_policy_and_trust();
    }

    /// Quotas are never exceeded, honest counters agree at equal heights, and every member
    /// list in every honest member's chain verifies and is the one its log decided.
    pub(super) fn check_policy_and_trust(&self) {
        let mut by_height: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for member in self.honest() {
            let counters = member.counters();
            let entries: Vec<_> = counters.entries().collect();
            for (prefix, count, quota) in &entries {
                assert!(count <= quota, "{prefix:?} has {count} ids, quota {quota}");
            }
            let previous = by_height
                .entry(member.height())
                .or_insert_with(|| entries.clone());
            assert_eq!(*previous, entries, "honest counters differ at one height");
            let membership = member.membership();
            let links = membership.chain().links.len();
            if self
                .verified
                .borrow_mut()
                .insert((usize::MAX, member.key(), links))
            {
                membership
                    .chain()
                    .verify(&self.network)
                    .expect("an honest member's chain does not verify");
            }
            let history = membership.history();
            assert!(links < history.len(), "a chain ahead of the log");
            for (link, decided) in membership.chain().links.iter().zip(&history[1..]) {
                assert_eq!(&link.list, decided, "a chain list the log did not decide");
            }
        }
    }

    /// Steps until every client holds a certificate and has repeated its request, or `limit`
    /// of virtual time passes; panics then, saying what is missing.
    pub(crate) fn run_until_issued(&mut self, limit: Duration) {
        let deadline = self.start + limit;
        while self.now < deadline {
            if self.clients.iter().all(|c| c.done() && !self.applying(c)) && self.flight.is_empty()
            {
                return;
            }
            if !self.step() {
                break;
            }
        }
        let missing = self.clients.iter().filter(|c| !c.done()).count();
        let heights: Vec<u64> = self.honest().map(|m| m.height()).collect();
        panic!(
            "{missing} of {} clients without a certificate after {:?} (honest heights {heights:?}, {} delivered)",
            self.clients.len(),
            self.now - self.start,
            self.delivered
        );
    }

    /// Every honest member's refusals, summed by reason label.
    pub(crate) fn refusals(&self) -> BTreeMap<&'static str, u64> {
        let mut sum = BTreeMap::new();
        for member in self.honest() {
            for (refusal, count) in member.refused() {
                *sum.entry(refusal.label()).or_insert(0) += count;
            }
        }
        sum
    }

    /// The distinct ids issued.
    pub(crate) fn issued_ids(&self) -> BTreeSet<NodeId> {
        self.issued.values().copied().collect()
    }

    /// Every honest member's member list.
    pub(crate) fn lists(&self) -> Vec<Vec<MemberKey>> {
        self.honest().map(|m| m.members().to_vec()).collect()
    }
}
