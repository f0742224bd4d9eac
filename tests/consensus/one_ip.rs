//! Many requests from one IP (PROTOCOL.md §11: a member holds one pending request per source):
//! clients behind one NAT, or nodes sharing a host with their members, whose requests reach the
//! members in different orders. Each member first holds a different one, so none has f+1
//! sightings; a member's hold on its source ends and it sights the request the others
//! converge on (docs/CONSENSUS.md, The member). Every request must be decided, with every
//! invariant checked after every step.

use crate::cluster::{Cluster, Options, Role};
use crate::sim::for_each_seed;

/// `clients` clients, `per_ip` to one IP. On even seeds each client's first send reaches one
/// member only, a different one per client (as a node's own member hears it first), and its
/// resends reach all; on odd seeds all arrive at once at every member, in the orders the
/// network's jitter makes.
fn behind_one_ip(roles: &[Role], clients: usize, per_ip: usize) {
    for_each_seed(|seed| {
        let options = Options {
            clients_per_ip: per_ip,
            one_prefix_at_once: true,
            members_per_client: (seed % 2 == 0).then_some(1),
            ..Options::default()
        };
        let mut cluster = Cluster::with(seed, roles, clients, crate::lossy(), options);
        cluster.run_until_issued(crate::LIMIT);
        assert_eq!(
            cluster.issued_ids().len(),
            clients,
            "every request gets its own id"
        );
    });
}

#[test]
fn four_members_decide_every_request_of_four_clients_on_one_ip() {
    behind_one_ip(&[Role::Honest; 4], 4, 4);
}

#[test]
fn seven_members_two_byzantine_decide_every_request_of_clients_sharing_two_ips() {
    // f = 2: a silent member and an equivocating proposer; three sightings of five honest.
    let mut roles = [Role::Honest; 7];
    roles[0] = Role::Equivocator;
    roles[3] = Role::Silent;
    behind_one_ip(&roles, 6, 3);
}
