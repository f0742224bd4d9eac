//! The node aimed at a third party (docs/SECURITY.md, "Second round"): a peer's FIND_NODE reply
//! names the contacts the node asks next, with any address, so a hostile peer can point the
//! node's requests (each an open, each open up to `open_tries` handshake INITs) at a victim that
//! never answers. One address is asked at most once a lookup however many ids it is listed
//! under, the node info cache keeps it under one id, and a contact that failed to answer is
//! forgotten, so it costs the victim nothing more in later lookups.

use super::harness::contact;
use super::review::{TARGET, corpus, finding_node, nodes};
use super::rpc::{config, dropped, from, node};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::overlay::id::Contact;
use weft::overlay::kademlia::{Dht, Event, KademliaConfig};

/// The victim: an address nobody answers from.
fn victim() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 9], 4444))
}

/// `n` made-up contacts, each a valid id, all at the victim's address.
fn at_victim(n: usize) -> Vec<Contact> {
    (0..n)
        .map(|i| Contact {
            addr: victim(),
            ..contact(8, 100 + i)
        })
        .collect()
}

/// Runs `dht` until its lookup for `token` finished, nobody answering; returns the requests it
/// sent to the victim and the time it finished.
fn run_to_the_end(dht: &mut Dht, mut now: Instant, token: u64) -> (usize, Instant) {
    let mut to_victim = 0;
    for _ in 0..400 {
        while let Some(t) = dht.poll_transmit() {
            to_victim += usize::from(t.addr == victim());
        }
        if std::iter::from_fn(|| dht.poll_event())
            .any(|e| matches!(e, Event::Lookup { token: t, .. } if t == token))
        {
            return (to_victim, now);
        }
        now += Duration::from_secs(2);
        dht.handle_timeout(now, 1_000);
    }
    panic!("the lookup never finished");
}

fn cached_at_victim(dht: &Dht) -> usize {
    (dht.cache().closest(&TARGET, usize::MAX))
        .iter()
        .filter(|c| c.addr == victim())
        .count()
}

#[test]
fn one_address_under_many_ids_is_asked_once_a_lookup_and_forgotten_once_it_failed() {
    let now = Instant::now();
    let hostile = contact(7, 9);
    let mut getter = node(1, config());
    let asked = finding_node(&mut getter, now, &hostile);
    // The largest reply a peer may send (k contacts), every one at the victim.
    let answer = nodes(&asked, at_victim(20));
    corpus("attack2-one-address-many-ids", &answer.encode());
    getter.handle(now, 1_000, from(&hostile), &answer.encode());
    assert_eq!(
        cached_at_victim(&getter),
        1,
        "the cache keeps one id an address"
    );
    let (to_victim, now) = run_to_the_end(&mut getter, now, 77);
    assert_eq!(to_victim, 1, "each id at the victim's address was asked");
    assert_eq!(dropped(&getter, "address_repeated"), 19);
    // It did not answer: forgotten, later lookups do not ask it again.
    assert_eq!(cached_at_victim(&getter), 0);
    getter.find_node(now, TARGET, 78);
    let (again, _) = run_to_the_end(&mut getter, now, 78);
    assert_eq!(again, 0, "a contact that failed was asked again");
}

#[test]
fn where_the_subnet_rule_is_on_a_reply_aims_at_most_its_cap_of_requests_at_one_network() {
    let now = Instant::now();
    let hostile = contact(7, 9);
    let mut getter = node(
        1,
        KademliaConfig {
            per_subnet_cap: Some(2),
            ..config()
        },
    );
    let asked = finding_node(&mut getter, now, &hostile);
    // Twenty ports of the victim's host: twenty addresses, one network.
    let ports = (at_victim(20).into_iter().enumerate())
        .map(|(i, c)| Contact {
            addr: SocketAddr::new(victim().ip(), 5000 + i as u16),
            ..c
        })
        .collect();
    getter.handle(now, 1_000, from(&hostile), &nodes(&asked, ports).encode());
    let mut to_network = 0;
    let mut now = now;
    for _ in 0..400 {
        while let Some(t) = getter.poll_transmit() {
            to_network += usize::from(t.addr.ip() == victim().ip());
        }
        if std::iter::from_fn(|| getter.poll_event()).any(|e| matches!(e, Event::Lookup { .. })) {
            break;
        }
        now += Duration::from_secs(2);
        getter.handle_timeout(now, 1_000);
    }
    assert_eq!(to_network, 2);
    assert_eq!(dropped(&getter, "address_repeated"), 18);
}
