//! The consensus service (PROTOCOL.md §11, issue 14) in a simulated cluster across seeds
//! (`WEFT_SEEDS=N` for more, `WEFT_SEED=S` for one): 4 and 7 members with loss, duplication,
//! reordering, partitions that heal, and up to f Byzantine members (silent, equivocating
//! proposer, forged and replayed votes, a member signing a second id). After every step the
//! harness checks: never two ids for one (key, salt); honest logs are prefixes of each other;
//! a client holds an id only with a valid certificate, and it is the logged one. Each scenario
//! ends only once every request is issued (and its repeat answered with the same id).

#[path = "consensus/cluster.rs"]
mod cluster;
#[path = "consensus/membership.rs"]
mod membership;
#[path = "consensus/one_ip.rs"]
mod one_ip;
#[path = "consensus/policy.rs"]
mod policy;
#[path = "consensus/schema.rs"]
mod schema;
#[path = "consensus/sightings.rs"]
mod sightings;
mod sim;
#[path = "consensus/store.rs"]
mod store;

use cluster::{Cluster, Crashes, Failpoint, Faults, Role};
use sim::for_each_seed;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn lossy() -> Faults {
    Faults {
        loss: 0.1,
        duplicate: 0.05,
        jitter: Duration::from_millis(20),
        partitioned: 0,
        heal_after: Duration::from_secs(5),
    }
}

fn run(seed: u64, roles: &[Role], clients: usize, faults: Faults) -> Cluster {
    let mut cluster = Cluster::new(seed, roles, clients, faults);
    cluster.run_until_issued(LIMIT);
    assert_eq!(
        cluster.issued_ids().len(),
        clients,
        "every request gets its own id"
    );
    cluster
}

#[test]
fn four_members_issue_ids_through_loss_and_reordering() {
    for_each_seed(|seed| {
        run(seed, &[Role::Honest; 4], 4, lossy());
    });
}

#[test]
fn seven_members_issue_ids_through_loss_and_reordering() {
    for_each_seed(|seed| {
        run(seed, &[Role::Honest; 7], 3, lossy());
    });
}

#[test]
fn a_silent_member_does_not_stop_four() {
    for_each_seed(|seed| {
        let roles = [Role::Honest, Role::Silent, Role::Honest, Role::Honest];
        run(seed, &roles, 3, lossy());
    });
}

#[test]
fn an_equivocating_proposer_does_not_split_four() {
    for_each_seed(|seed| {
        let roles = [Role::Equivocator, Role::Honest, Role::Honest, Role::Honest];
        run(seed, &roles, 3, lossy());
    });
}

#[test]
fn forged_and_replayed_votes_and_a_second_id_are_refused() {
    for_each_seed(|seed| {
        let roles = [Role::Forger, Role::Honest, Role::Honest, Role::Honest];
        let cluster = run(seed, &roles, 3, lossy());
        let refusals = cluster.refusals();
        assert!(
            refusals.get("bad_signature").copied().unwrap_or(0) > 0,
            "forged votes were not refused as bad signatures: {refusals:?}"
        );
    });
}

#[test]
fn seven_with_two_byzantine_and_a_partition_that_heals() {
    for_each_seed(|seed| {
        let roles = [
            Role::Equivocator,
            Role::Silent,
            Role::Honest,
            Role::Honest,
            Role::Honest,
            Role::Honest,
            Role::Honest,
        ];
        let faults = Faults {
            // Two honest members cut off as well: the three connected honest ones and the
            // equivocator are short of the quorum of five, so nothing is issued until the
            // partition heals.
            partitioned: 2,
            heal_after: Duration::from_secs(8),
            ..lossy()
        };
        let cluster = run(seed, &roles, 3, faults);
        assert!(
            cluster.now - cluster.start >= Duration::from_secs(8),
            "ids were issued without a quorum"
        );
    });
}

#[test]
fn equivocating_votes_neither_split_honest_logs_nor_stall_them() {
    // A member that prevotes a value to half the members and nil to the rest used to leave
    // honest members unable to count one polka (each keeps the first of its two votes); they
    // now count a quorum of prevotes they hold as a polka certificate, so every request is
    // issued once the network heals.
    for_each_seed(|seed| {
        let roles = [
            Role::VoteEquivocator,
            Role::Honest,
            Role::Honest,
            Role::Honest,
        ];
        run(seed, &roles, 3, lossy());
    });
}

/// Crashes a member twice at `at` (issue 14 point 8), restarts it from its store each time, and
/// checks, besides every invariant after every step: its log and ids unchanged by the restart,
/// no honest member ever signs two votes for one slot, every request issued.
fn crash_and_restart(at: Failpoint) {
    for_each_seed(|seed| {
        let mut cluster = Cluster::new(seed, &[Role::Honest; 4], 3, lossy());
        let member = if at == Failpoint::BeforeProposalSynced {
            // The round-0 proposer of height 2: it proposes as it decides height 1, early.
            let mut sorted = cluster.members.clone();
            sorted.sort_unstable();
            cluster
                .members
                .iter()
                .position(|m| *m == sorted[2])
                .unwrap()
        } else {
            (seed % 4) as usize
        };
        cluster.crash_at(Crashes {
            member,
            at,
            // A member replies after a decision once or twice a run, and proposes early about
            // as often: crash at the first.
            skip: if matches!(at, Failpoint::BeforeReply | Failpoint::BeforeProposalSynced) {
                0
            } else {
                (seed / 4 % 3) as u32
            },
            times: 2,
            down: Duration::from_millis(300 + seed % 7 * 200),
        });
        cluster.run_until_issued(LIMIT);
        assert!(cluster.crashed > 0, "the failpoint {at:?} was never hit");
        assert_eq!(
            cluster.issued_ids().len(),
            3,
            "every request gets its own id"
        );
    });
}

#[test]
fn a_crash_after_a_vote_is_written_loses_nothing() {
    crash_and_restart(Failpoint::AfterVoteWritten);
}

#[test]
fn a_crash_after_a_vote_is_sent_never_leads_to_a_second_vote() {
    crash_and_restart(Failpoint::AfterVoteSent);
}

#[test]
fn a_crash_after_a_decision_is_written_keeps_it() {
    crash_and_restart(Failpoint::AfterDecisionWritten);
}

#[test]
fn a_crash_before_the_reply_keeps_the_id() {
    crash_and_restart(Failpoint::BeforeReply);
}

/// Issue 14's 136 s seven-member height (seen once in a release benchmark with 256 clients,
/// never since): seven honest members, many clients arriving at once, every message due at one
/// instant handed over in one batch as a node's host does, lossless on even seeds and lossy on
/// odd ones. No height may take longer than `WEFT_STALL_SECS` (default 20) of virtual time.
/// An investigation, slow in a debug build: `cargo test --test consensus -- --ignored
/// seven_members_with_many` (`WEFT_SEEDS`, `WEFT_STALL_CLIENTS`, default 32; the odd seeds'
/// `WEFT_STALL_LOSS_PERCENT`, default 10, and `WEFT_STALL_JITTER_MS`, default 20, until the
/// network heals after 5 s).
#[test]
#[ignore]
fn seven_members_with_many_clients_in_batches_never_stall() {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let bound = Duration::from_secs(number("WEFT_STALL_SECS", 20));
    let clients = number("WEFT_STALL_CLIENTS", 32) as usize;
    for_each_seed(|seed| {
        let faults = if seed % 2 == 0 {
            Faults::default()
        } else {
            Faults {
                loss: number("WEFT_STALL_LOSS_PERCENT", 10) as f64 / 100.0,
                jitter: Duration::from_millis(number("WEFT_STALL_JITTER_MS", 20)),
                ..lossy()
            }
        };
        let options = cluster::Options {
            batched: true,
            arrivals: Duration::from_millis(200),
            // Every client in one /24: limits raised, as the benchmark raises them.
            policy: weft::consensus::policy::PolicyConfig {
                ipv4: [1 << 20; 3],
                ..weft::consensus::policy::PolicyConfig::default()
            },
            ..cluster::Options::default()
        };
        let mut cluster = Cluster::with(seed, &[Role::Honest; 7], clients, faults, options);
        cluster.run_until_issued(LIMIT);
        let (took, height) = cluster.slowest_height;
        eprintln!("seed {seed}: slowest height {height} took {took:?}");
        assert!(
            took <= bound,
            "height {height} took {took:?} (bound {bound:?})"
        );
    });
}

/// A round-0 proposal leaves before its commit (docs/CONSENSUS.md, Performance); a crash that
/// loses the commit must not lead the restarted member to propose another batch in that round
/// (the harness asserts one batch per honest proposer and round).
#[test]
fn a_crash_before_an_early_proposal_is_synced_never_leads_to_a_second_one() {
    crash_and_restart(Failpoint::BeforeProposalSynced);
}
