//! Which channel each client's requests came on, and the source address its shard reports for
//! it (PROTOCOL.md §11: the address the policy and the sightings count is the one the member's
//! own channel saw, never one the request names).
//!
//! The address is asked of the shard once per channel (`Context::peer_info`); the messages that
//! arrive meanwhile wait here. Every table is bounded by the node: at most [`MAX_CLIENTS`]
//! channels' addresses are kept, and at most [`MAX_ASKING`] questions, each with at most
//! [`MAX_WAITING`] messages, wait for an answer. A full address table gives up an entry for a
//! newcomer: an entry only caches the shard's answer, so the channel evicted is asked about
//! again on its next message, while refusing would let whoever filled the table first (a few
//! peers with a thousand channels each) lock every later client out for as long as they stay.

use crate::channel::ChannelHandle;
use crate::handle::FxHashMap;
use std::net::SocketAddr;

/// Client channels whose address is known, at most.
pub const MAX_CLIENTS: usize = 4096;

/// Peer-info questions waiting for their answer, at most.
pub const MAX_ASKING: usize = 256;

/// Messages of one channel waiting for its address, at most.
pub const MAX_WAITING: usize = 4;

/// A channel on a shard.
pub type Where = (usize, ChannelHandle);

/// What to do with a client's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The channel's source address is known: hand the message to the member as from it.
    Known(SocketAddr),
    /// The address was asked for already; the message waits with the question.
    Waiting,
    /// Ask the shard: the caller asks and then calls [`Clients::asked`].
    Ask,
    /// A bound is reached: refuse the message.
    Refused,
}

/// The client table.
#[derive(Default)]
pub struct Clients {
    address: FxHashMap<Where, SocketAddr>,
    channel: FxHashMap<SocketAddr, Where>,
    asking: FxHashMap<u64, (Where, Vec<Vec<u8>>)>,
}

impl Clients {
    /// A message arrived on `at`.
    pub fn seen(&mut self, at: Where, bytes: &[u8]) -> Seen {
        if let Some(&address) = self.address.get(&at) {
            return Seen::Known(address);
        }
        if let Some((_, waiting)) = self.asking.values_mut().find(|(w, _)| *w == at) {
            if waiting.len() >= MAX_WAITING {
                return Seen::Refused;
            }
            waiting.push(bytes.to_vec());
            return Seen::Waiting;
        }
        if self.asking.len() >= MAX_ASKING {
            return Seen::Refused;
        }
        Seen::Ask
    }

    /// The shard was asked about the peer of `at` with `token`; `bytes` waits for the answer.
    pub fn asked(&mut self, token: u64, at: Where, bytes: &[u8]) {
        self.asking.insert(token, (at, vec![bytes.to_vec()]));
    }

    /// The answer to question `token`: the channel's address (when the shard still knows the
    /// peer) and the messages that waited for it; `None` when the token is not ours.
    pub fn answered(
        &mut self,
        token: u64,
        address: Option<SocketAddr>,
    ) -> Option<(Option<SocketAddr>, Vec<Vec<u8>>)> {
        let (at, waiting) = self.asking.remove(&token)?;
        if let Some(address) = address {
            if self.address.len() >= MAX_CLIENTS
                && !self.address.contains_key(&at)
                && let Some(&evicted) = self.address.keys().next()
            {
                self.closed(evicted);
            }
            self.address.insert(at, address);
            self.channel.insert(address, at);
            return Some((Some(address), waiting));
        }
        Some((None, waiting))
    }

    /// The channel to answer the client at `address` on.
    pub fn channel_of(&self, address: &SocketAddr) -> Option<Where> {
        self.channel.get(address).copied()
    }

    /// Forgets a channel that closed.
    pub fn closed(&mut self, at: Where) {
        if let Some(address) = self.address.remove(&at)
            && self.channel.get(&address) == Some(&at)
        {
            self.channel.remove(&address);
        }
    }

    /// Client channels known.
    pub fn len(&self) -> usize {
        self.address.len()
    }

    /// True when none is known.
    pub fn is_empty(&self) -> bool {
        self.address.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::Hashcode;

    #[test]
    fn a_channel_is_asked_about_once_and_every_table_is_bounded() {
        let mut clients = Clients::default();
        let at: Where = (0, ChannelHandle(Hashcode(1)));
        assert_eq!(clients.seen(at, b"a"), Seen::Ask);
        clients.asked(7, at, b"a");
        for _ in 1..MAX_WAITING {
            assert_eq!(clients.seen(at, b"b"), Seen::Waiting);
        }
        assert_eq!(clients.seen(at, b"c"), Seen::Refused, "waiting bound");
        let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (known, waiting) = clients.answered(7, Some(address)).unwrap();
        assert_eq!((known, waiting.len()), (Some(address), MAX_WAITING));
        assert_eq!(clients.answered(7, Some(address)), None, "spent");
        assert_eq!(clients.seen(at, b"d"), Seen::Known(address));
        assert_eq!(clients.channel_of(&address), Some(at));
        clients.closed(at);
        assert_eq!(clients.channel_of(&address), None);
        for token in 0..MAX_ASKING as u32 {
            let at = (0, ChannelHandle(Hashcode(token + 100)));
            assert_eq!(clients.seen(at, b"x"), Seen::Ask);
            clients.asked(u64::from(token), at, b"x");
        }
        assert_eq!(
            clients.seen((0, ChannelHandle(Hashcode(5))), b"x"),
            Seen::Refused,
            "question bound"
        );
    }

    /// A table filled by whoever came first (channels of a few peers that stay open) does not
    /// lock a later client out: its channel is asked about, and its address kept.
    #[test]
    fn a_full_address_table_still_takes_a_newcomer() {
        let mut clients = Clients::default();
        let flood: SocketAddr = "127.0.1.1:9".parse().unwrap();
        for token in 0..MAX_CLIENTS as u32 {
            let at = (0, ChannelHandle(Hashcode(token + 1)));
            assert_eq!(clients.seen(at, b"x"), Seen::Ask);
            clients.asked(u64::from(token), at, b"x");
            assert!(clients.answered(u64::from(token), Some(flood)).is_some());
        }
        assert_eq!(clients.len(), MAX_CLIENTS);
        let honest: SocketAddr = "127.0.2.1:9".parse().unwrap();
        let at = (0, ChannelHandle(Hashcode(1 << 30)));
        assert_eq!(clients.seen(at, b"request"), Seen::Ask);
        clients.asked(1 << 40, at, b"request");
        let (known, waiting) = clients.answered(1 << 40, Some(honest)).unwrap();
        assert_eq!((known, waiting.len()), (Some(honest), 1));
        assert_eq!(clients.seen(at, b"again"), Seen::Known(honest));
        assert_eq!(clients.len(), MAX_CLIENTS, "still bounded");
    }
}
