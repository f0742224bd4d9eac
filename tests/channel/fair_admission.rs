//! A shard's time is fair (issue 10): when the kernel drops datagrams on the shard's socket (its
//! running SO_RXQ_OVFL count grows) while batches come back full, a prefix flooding the endpoint
//! is cut to its share before any parsing or crypto, and another prefix's PINGs are all
//! answered; a shard that keeps up, however full its batches, drops nothing, and neither does
//! one whose only busy source is a lone prefix.

use super::{lone_node, plain, plaintext, write};
use std::net::SocketAddr;
use std::time::Duration;
use weft::channel::{Endpoint, EndpointConfig};
use weft::wire::{Message, PeerId};

const WINDOW: u32 = 1024;
const BATCH: u32 = 32;
const WINDOWS: u32 = 16;
const BATCHES: u32 = WINDOWS * WINDOW / BATCH;
/// The time between two receive batches.
const TICK: Duration = Duration::from_micros(20);

/// PONGs the endpoint sent, to the flooding prefix and to the honest peer.
#[derive(Debug, Default, PartialEq)]
struct Answered {
    flood: u32,
    honest: u32,
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

/// How the driver's batches come back.
#[derive(Clone, Copy)]
struct Batches {
    /// Full (as large as a batch can be).
    full: bool,
    /// Datagrams the kernel dropped on the socket before each batch.
    drops: u32,
    /// Whether one datagram of each batch comes from an honest peer in another prefix; the
    /// flooder's /24 then sends the rest.
    honest: bool,
}

/// Feeds `WINDOWS` windows of 32-datagram batches of PINGs from a /24 (spread over its hosts)
/// and, if asked, one from a peer elsewhere, reporting each batch as `batches` says; counts the
/// answers over the whole run and over its second half.
fn flood(batches: Batches) -> (Endpoint, Answered, Answered) {
    let config = EndpointConfig {
        admission_window: WINDOW,
        ..plaintext()
    };
    let (mut node, start) = lone_node(config);
    let local = node.local_peer_id();
    let (flooder, honest) = (PeerId([0x20; 16]), PeerId([0x30; 16]));
    let honest_from = SocketAddr::from(([10, 1, 0, 2], 1000));
    let flooding = BATCH - u32::from(batches.honest);
    let (mut all, mut late) = (Answered::default(), Answered::default());
    let mut overflows = 0u32;
    let mut buf = vec![0u8; 1500];
    for batch in 0..BATCHES {
        let now = start + TICK * batch;
        for host in 1..=flooding as u8 {
            let token = [host; 8];
            let from = SocketAddr::from(([10, 0, 0, host], 2000));
            node.handle(
                now,
                from,
                &mut write(plain(flooder, local), &[Message::Ping { token: &token }]),
            );
        }
        if batches.honest {
            let token = u64::from(batch).to_be_bytes();
            node.handle(
                now,
                honest_from,
                &mut write(plain(honest, local), &[Message::Ping { token: &token }]),
            );
        }
        overflows = overflows.wrapping_add(batches.drops);
        node.note_receive_batch(now, batches.full, overflows);
        let second_half = batch >= BATCHES / 2;
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

fn shard_busy(node: &Endpoint) -> u64 {
    node.stats()
        .get("weft_packets_dropped_total", Some(("reason", "shard_busy")))
}

#[test]
fn with_kernel_drops_a_flooding_prefix_is_cut_to_its_share_and_another_prefixs_pings_are_all_answered()
 {
    let (node, all, late) = flood(Batches {
        full: true,
        drops: BATCH,
        honest: true,
    });
    assert_eq!(all.honest, BATCHES, "every honest PING was answered");
    // Over the second half the shard has cut the flood to its floor (the socket dropped as
    // much as it delivered from the start, so no window ever kept up): a sixteenth of each
    // window, less what the honest peer uses of it.
    let per_window = WINDOW / 16 - WINDOW / BATCH;
    assert_eq!(late.flood, per_window * WINDOWS / 2);
    let sent = u64::from(BATCHES * (BATCH - 1));
    assert_eq!(shard_busy(&node), sent - u64::from(all.flood));
}

#[test]
fn full_batches_without_kernel_drops_answer_every_ping_of_a_flood() {
    let (node, all, _) = flood(Batches {
        full: true,
        drops: 0,
        honest: true,
    });
    assert_eq!(
        all,
        Answered {
            flood: BATCHES * (BATCH - 1),
            honest: BATCHES
        }
    );
    assert_eq!(shard_busy(&node), 0);
}

#[test]
fn a_lone_heavy_prefix_is_not_cut_even_when_the_kernel_drops() {
    let (node, all, _) = flood(Batches {
        full: true,
        drops: BATCH,
        honest: false,
    });
    assert_eq!(
        all,
        Answered {
            flood: BATCHES * BATCH,
            honest: 0
        }
    );
    assert_eq!(shard_busy(&node), 0);
}
