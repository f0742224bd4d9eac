//! One side of a bare reliability channel as a simulated node, so the reliability layer's
//! scenarios (PROTOCOL.md §7: the eight modes, congestion and flow control, fragmentation)
//! run on the same links and virtual clock as the endpoint's, below any session or handshake.
//!
//! A node owns a [`ChannelReliability`] and its [`PathState`] and speaks real packets: a
//! SEQUENCED header ([`Header::emit`]), the messages `write_frames` wrote, and 16 zero bytes
//! where an AEAD tag would stand (parsed as padding), so a datagram has the size a sealed one
//! would and the link's MTU judges it as it would a real one. Received datagrams go through
//! [`Packet::parse`] and every message to its handler, as the endpoint does.

use super::SimNode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::reliability::{
    ChannelReliability, Delivery, PathState, ReassemblyBudget, ReliabilityConfig, SendError,
    decode_packet_number,
};
use weft::channel::{BufferPool, Transmit};
use weft::wire::{
    Capabilities, ChannelId, Flags, Header, Message, Packet, PeerId, SEQUENCED_HEADER_LEN, TAG_LEN,
};

/// The payload room a node offers `write_frames`: the largest UDP payload either side probes
/// up to (PROTOCOL.md §7.6) less the header and tag, so a probe may exceed the link's MTU and
/// be lost as on a real path.
const PAYLOAD_ROOM: usize = 1452;

/// The channel every node of this kind speaks on.
pub(crate) const CHANNEL: ChannelId = ChannelId(0x0001_0002);

/// Most datagrams one `poll_transmit` round sends before it lets time move.
const SEND_BURST: u32 = 10_000;

/// One side of a reliability channel on the simulated network.
pub(crate) struct ChannelNode {
    /// The channel's reliability state.
    pub(crate) channel: ChannelReliability,
    /// The path it shares (alone here).
    pub(crate) path: PathState,
    /// Its peer's reassembly memory.
    pub(crate) budget: ReassemblyBudget,
    /// Message buffers, as the endpoint keeps them.
    pub(crate) pool: BufferPool,
    local: PeerId,
    remote: PeerId,
    peer: SocketAddr,
    next_pn: u64,
    /// The network's time as of the last event or collection; `poll_transmit` writes at it.
    now: Instant,
    /// Datagrams written in the current round.
    burst: u32,
}

impl ChannelNode {
    /// A channel side that sends to `peer`, its packet numbers starting at `first_pn`
    /// (PROTOCOL.md §3: plaintext channels start at a random 32-bit value).
    pub(crate) fn new(
        capabilities: Capabilities,
        config: &ReliabilityConfig,
        now: Instant,
        (local, remote): (u8, u8),
        peer: SocketAddr,
        first_pn: u64,
    ) -> ChannelNode {
        ChannelNode {
            channel: ChannelReliability::new(capabilities, config, now),
            path: PathState::new(config, now),
            budget: ReassemblyBudget::new(64 << 20, 16 << 20),
            pool: BufferPool::new(),
            local: PeerId([local; 16]),
            remote: PeerId([remote; 16]),
            peer,
            next_pn: first_pn,
            now,
            burst: 0,
        }
    }

    /// Moves the node's clock to the network's (for actions taken between events).
    pub(crate) fn at(&mut self, now: Instant) -> &mut ChannelNode {
        self.now = self.now.max(now);
        self
    }

    /// Queues a message at the node's time.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<u64, SendError> {
        self.channel.send(self.now, data, &mut self.pool)
    }

    /// The next thing for the application.
    pub(crate) fn poll_event(&mut self) -> Option<Delivery> {
        self.channel.poll_event()
    }

    /// The message numbers that `datagram`, one of these nodes' packets, carries.
    pub(crate) fn message_numbers(datagram: &[u8]) -> Vec<u64> {
        let Ok(packet) = Packet::parse(datagram) else {
            return Vec::new();
        };
        packet
            .messages()
            .filter_map(|message| match message {
                Message::Data { message_number, .. }
                | Message::DataFragment { message_number, .. } => Some(message_number),
                _ => None,
            })
            .collect()
    }
}

impl SimNode for ChannelNode {
    fn handle(&mut self, now: Instant, _from: SocketAddr, datagram: &mut [u8]) {
        self.now = self.now.max(now);
        self.burst = 0;
        let packet = Packet::parse(&*datagram).expect("a channel node's own packets parse");
        let wire_pn = packet
            .header
            .sequence
            .expect("channel packets are SEQUENCED");
        let pn = decode_packet_number(self.channel.largest_received(), wire_pn);
        // PROTOCOL.md §7.1: everything but ACK (and padding) elicits an acknowledgement.
        let eliciting = packet
            .messages()
            .any(|message| !matches!(message, Message::Ack(_)));
        let channel = &mut self.channel;
        channel.on_packet_received(now, pn, eliciting);
        for message in packet.messages() {
            match message {
                Message::Data {
                    message_number,
                    payload,
                } => channel.on_data(now, message_number, payload, &mut self.pool),
                Message::DataFragment {
                    message_number,
                    total_length,
                    offset,
                    bytes,
                } => channel.on_fragment(
                    now,
                    message_number,
                    total_length,
                    offset,
                    bytes,
                    &mut self.budget,
                    &mut self.pool,
                ),
                Message::Ack(ack) => {
                    let delay = Duration::from_micros(ack.ack_delay_us);
                    channel.on_ack(now, ack.iter(), delay, &mut self.path);
                    channel.reclaim(&mut self.pool);
                }
                Message::Window {
                    max_message,
                    max_bytes,
                } => channel.on_window(max_message, max_bytes),
                _ => {}
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.burst = 0;
        self.channel.handle_timeout(now, &mut self.path);
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.now;
        if self.burst >= SEND_BURST || !self.channel.wants_to_send(now, &self.path) {
            self.burst = 0;
            return None;
        }
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: self.local,
            recipient: self.remote,
            channel: CHANNEL,
            // PROTOCOL.md §3: the low 32 bits of the packet number.
            sequence: Some(self.next_pn as u32),
        };
        let at = header.emit(buf).expect("room for a header");
        debug_assert_eq!(at, SEQUENCED_HEADER_LEN);
        let end = buf.len().min(at + PAYLOAD_ROOM);
        let written =
            self.channel
                .write_frames(now, self.next_pn, &mut self.path, &mut buf[at..end]);
        if written == 0 {
            self.burst = 0;
            return None;
        }
        self.next_pn += 1;
        self.burst += 1;
        let len = at + written + TAG_LEN;
        buf[at + written..len].fill(0);
        Some(Transmit {
            destination: self.peer,
            len,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.channel.poll_timeout()
    }

    fn clock(&mut self, now: Instant) {
        // What the application did between events (read, sent) is sent at the network's
        // time: a packet stamped with an older one would inflate its RTT sample.
        self.now = self.now.max(now);
    }
}
