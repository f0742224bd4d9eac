//! A connection taking one datagram from its peer (issue 11 point 1; quinn-proto's
//! `Connection::handle` is the model): the router found it with the datagram's one lookup and
//! made the checks that need the router's state (the recipient, admission, the size), and calls
//! [`Connection::handle`] once. The connection opens the datagram in place under its own
//! session, hands the default channel's messages back (establishment, stateless answers: the
//! router's), and walks a channel packet's messages once on the channel it names
//! ([`Connection::walk`]). An unknown channel's CHANNEL_COOKIE is verified here, statelessly,
//! with the cookie secrets the router lends; only the allocation in the node's tables that it
//! then asks for is the router's ([`Handled::Establish`]).

#![deny(clippy::arithmetic_side_effects)]

use super::walk::{Shared, Walked, check_cookie2};
use super::{Connection, Inbound, Lane, Opened};
use crate::channel::Datagram;
use crate::wire::{Capabilities, ChannelId, Flags, Header, Message, Messages, parse_payload};
use std::net::SocketAddr;
use std::time::Instant;

const COOKIE_FAILURES: &str = "weft_cookie_failures_total";

/// What a datagram came to, and what it leaves the router to do.
// `Messages` keeps the first messages its validation decoded (so the walk does not decode them
// again); the enum lives on the stack for one datagram, and boxing it would allocate per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Handled<'d> {
    /// A packet on the default channel, opened and validated: its messages are the router's
    /// (channel establishment, PING, stateless answers). `rekey_due`: the session just opened
    /// as many packets as its policy lets it before the node replaces it.
    Default {
        header: Header,
        messages: Messages<'d>,
        rekey_due: bool,
    },
    /// A packet on a channel the connection does not hold, headed by a CHANNEL_COOKIE that
    /// verified (PROTOCOL.md §6 step 4) from the connection's address: the router allocates
    /// the channel, then has the connection walk `rest`, the messages after the cookie.
    Establish {
        header: Header,
        capabilities: Capabilities,
        rest: Messages<'d>,
        rekey_due: bool,
    },
    /// Walked on the channel in `lane`; `walked` is what the router still does.
    Walked {
        lane: Lane,
        walked: Walked,
        rekey_due: bool,
    },
    /// Dropped and counted; with `reset`, no session of the peer can open it, and the router
    /// answers RESET (PROTOCOL.md §4).
    Dropped { reset: bool },
    /// Data on a channel this node closed or does not hold, from an authenticated peer that
    /// missed our CHANNEL_CLOSE (counted): the router tells it again at `to`, or its resends
    /// fill the window its channels share (§6, §7.3).
    Closed { to: SocketAddr, channel: ChannelId },
}

impl Connection {
    /// Takes one `datagram` from `from`, opening it in place when sealed: afterwards its bytes
    /// are plaintext, or unspecified where the tag did not verify (STYLE.md 17).
    pub(crate) fn handle<'d>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: impl Into<Datagram<'d>>,
        shared: &mut Shared<'_>,
    ) -> Handled<'d> {
        let datagram = datagram.into();
        let (header, header_len) = match Header::parse(datagram.bytes()) {
            Ok(parsed) => parsed,
            Err(error) => {
                shared.drop_packet(error.kind.reason());
                return Handled::Dropped { reset: false };
            }
        };
        // The router routed the datagram by the connection's key: the peer's id, or, towards
        // another local identity, the key that identity's connection has (`identities.rs`).
        // The events and the router name the peer by it; the associated data is the header's
        // bytes as received.
        let header = Header {
            sender: self.id,
            ..header
        };
        let (messages, rekey_due) = if header.flags.contains(Flags::ENCRYPTED) {
            let lent = Inbound {
                scratch: shared.scratch,
                stats: shared.stats,
            };
            match self.open(now, &shared.ctx, lent, &header, header_len, datagram) {
                Opened::Messages {
                    messages,
                    rekey_due,
                    lend,
                } => {
                    // Whole messages of this datagram are cut from its memory, not copied,
                    // until the router stops the pool lending after the datagram. The default
                    // channel carries no DATA: nothing to lend there.
                    if let Some(frozen) = lend.filter(|_| !header.channel.is_default()) {
                        shared.pool.lend_from(frozen);
                    }
                    (messages, rekey_due)
                }
                Opened::Dropped { reset } => return Handled::Dropped { reset },
                Opened::Closed { to } => {
                    let channel = header.channel;
                    return Handled::Closed { to, channel };
                }
            }
        } else {
            let (datagram, _) = datagram.share();
            let payload = datagram.get(header_len..).unwrap_or_default();
            match parse_payload(&header, payload) {
                Ok(messages) => (messages, false),
                Err(error) => {
                    shared.drop_packet(error.kind.reason());
                    return Handled::Dropped { reset: false };
                }
            }
        };
        if header.channel.is_default() {
            return Handled::Default {
                header,
                messages,
                rekey_due,
            };
        }
        self.on_channel(now, from, header, messages, rekey_due, shared)
    }

    /// A packet on a channel (not the default one), its `messages` validated: walked on the
    /// channel the connection holds under the header's id, or, for an unknown channel, its
    /// CHANNEL_COOKIE verified for the router to establish it.
    pub(crate) fn on_channel<'d>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        messages: Messages<'d>,
        rekey_due: bool,
        shared: &mut Shared<'_>,
    ) -> Handled<'d> {
        if let Some(&lane) = self.channels.get(&header.channel.0) {
            if self.address != from {
                // Path validation needs an authenticated session (PROTOCOL.md §5); a kind-0
                // peer cannot move.
                shared.drop_packet("address_mismatch");
                return Handled::Dropped { reset: false };
            }
            let walked = self.walk(now, (from, &header), lane, messages, false, shared);
            return Handled::Walked {
                lane,
                walked,
                rekey_due,
            };
        }
        // PROTOCOL.md §6: a packet on an unknown channel must begin with a verifying
        // CHANNEL_COOKIE; it is dropped, not buffered.
        let mut rest = messages.clone();
        let Some(Message::ChannelCookie {
            cookie2,
            capabilities,
        }) = rest.next()
        else {
            shared.drop_packet("unknown_channel");
            // An authenticated peer sending data on a channel we do not hold missed our
            // CHANNEL_CLOSE in an earlier session (this one did not retire the id): tell it.
            // Made-up ids without data get nothing (finding 4). A second walk, but only on
            // this refusal path.
            let data =
                |m: Message<'_>| matches!(m, Message::Data { .. } | Message::DataFragment { .. });
            let secure = header.flags.contains(Flags::ENCRYPTED);
            return match self.session.as_ref() {
                Some(entry) if secure && messages.clone().any(data) => Handled::Closed {
                    to: entry.address,
                    channel: header.channel,
                },
                _ => Handled::Dropped { reset: false },
            };
        };
        let claim = (header.sender, header.channel, from);
        if let Err(reason) = check_cookie2(shared.cookies, shared.node_id, claim, cookie2) {
            shared
                .stats
                .add(COOKIE_FAILURES, Some(("reason", reason)), 1);
            shared.drop_packet("bad_cookie");
            return Handled::Dropped { reset: false };
        }
        if self.address != from {
            shared.drop_packet("address_mismatch");
            return Handled::Dropped { reset: false };
        }
        Handled::Establish {
            header,
            capabilities,
            rest,
            rekey_due,
        }
    }
}
