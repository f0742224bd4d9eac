//! A shard's time is fair (issue 10): when the driver's receive batches keep coming back full,
//! a prefix flooding the endpoint is cut to its share before any parsing or crypto, and
//! another prefix's PINGs are all answered; a shard that is not overloaded drops nothing.

use super::{lone_node, plain, plaintext, write};
use std::net::SocketAddr;
use weft::channel::{Endpoint, EndpointConfig};
use weft::wire::{Message, PeerId};

const WINDOW: u32 = 1024;
const BATCH: u32 = 32;
const WINDOWS: u32 = 16;

/// PONGs the endpoint sent, to the flooding prefix and to the honest peer.
#[derive(Debug, Default, PartialEq)]
struct Answered {
    flood: u32,
    honest: u32,
}

/// Feeds `WINDOWS` windows of batches, each 31 PINGs from a /24 (spread over its hosts) and
/// one from a peer elsewhere, reporting every batch `full` or not; counts the answers over
/// the whole run and over its second half.
fn flood(full: bool) -> (Endpoint, Answered, Answered) {
    let config = EndpointConfig {
        admission_window: WINDOW,
        ..plaintext()
    };
    let (mut node, now) = lone_node(config);
    let local = node.local_peer_id();
    let (flooder, honest) = (PeerId([0x20; 16]), PeerId([0x30; 16]));
    let honest_from = SocketAddr::from(([10, 1, 0, 2], 1000));
    let (mut all, mut late) = (Answered::default(), Answered::default());
    let mut buf = vec![0u8; 1500];
    for batch in 0..WINDOWS * WINDOW / BATCH {
        node.note_receive_batch(full);
        for host in 1..BATCH as u8 {
            let token = [host; 8];
            let from = SocketAddr::from(([10, 0, 0, host], 2000));
            node.handle(
                now,
                from,
                &mut write(plain(flooder, local), &[Message::Ping { token: &token }]),
            );
        }
        let token = u64::from(batch).to_be_bytes();
        node.handle(
            now,
            honest_from,
            &mut write(plain(honest, local), &[Message::Ping { token: &token }]),
        );
        let second_half = batch >= WINDOWS * WINDOW / BATCH / 2;
        while let Some(transmit) = node.poll_transmit(&mut buf) {
            let honest = transmit.destination == honest_from;
            all.count(honest);
            if second_half {
                late.count(honest);
            }
        }
    }
    (node, all, late)
}

impl Answered {
    fn count(&mut self, honest: bool) {
        if honest {
            self.honest += 1;
        } else {
            self.flood += 1;
        }
    }
}

fn shard_busy(node: &Endpoint) -> u64 {
    node.stats()
        .get("weft_packets_dropped_total", Some(("reason", "shard_busy")))
}

#[test]
fn under_overload_a_flooding_prefix_is_cut_to_its_share_and_another_prefixs_pings_are_all_answered()
{
    let (node, all, late) = flood(true);
    let batches = WINDOWS * WINDOW / BATCH;
    assert_eq!(all.honest, batches, "every honest PING was answered");
    // Over the second half the shard has cut the flood to its floor: a sixteenth of each
    // window, less what the honest peer uses of it.
    let per_window = WINDOW / 16 - WINDOW / BATCH;
    assert_eq!(late.flood, per_window * WINDOWS / 2);
    let sent = u64::from(batches * (BATCH - 1));
    assert_eq!(shard_busy(&node), sent - u64::from(all.flood));
}

#[test]
fn a_shard_that_is_not_overloaded_answers_every_ping_of_a_flood() {
    let (node, all, _) = flood(false);
    let batches = WINDOWS * WINDOW / BATCH;
    assert_eq!(
        all,
        Answered {
            flood: batches * (BATCH - 1),
            honest: batches
        }
    );
    assert_eq!(shard_busy(&node), 0);
}
