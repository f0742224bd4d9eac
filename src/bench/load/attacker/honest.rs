//! The attacker used politely: PINGs, opening and closing channels as PROTOCOL.md §6 says, a
//! RESET, and waiting for the node's INIT. A test measures honest peers with this same code.

use super::{AttackError, Attacker, Received};
use crate::session::mac::MAC_LEN;
use crate::wire::{Capabilities, ChannelId, CloseReason, Message};
use rand::Rng;
use std::time::{Duration, Instant};

impl Attacker {
    /// One sealed PING on the default channel; returns the round-trip time of its PONG.
    pub fn ping(&mut self, timeout: Duration) -> Result<Duration, AttackError> {
        self.ping_until(Instant::now() + timeout)
    }

    pub(super) fn ping_until(&mut self, deadline: Instant) -> Result<Duration, AttackError> {
        let token = self.token();
        let started = Instant::now();
        self.send_sealed(ChannelId::DEFAULT, &[Message::Ping { token: &token }])?;
        self.await_pong(token, deadline)?;
        Ok(started.elapsed())
    }

    pub(super) fn await_pong(
        &mut self,
        token: [u8; 8],
        deadline: Instant,
    ) -> Result<(), AttackError> {
        while let Some(received) = self.recv(deadline)? {
            if !received.sealed {
                continue;
            }
            let answered = received
                .messages()
                .iter()
                .any(|m| matches!(m, Message::Pong { token: t } if **t == token));
            if answered {
                return Ok(());
            }
        }
        Err(AttackError::Timeout("PONG"))
    }

    /// Opens a channel with NEW / ACKNOWLEDGE / FINALIZE (PROTOCOL.md §6), sealed on the default
    /// channel; returns its id. `c1` is ours to pick (any value but 0).
    pub fn open_channel(
        &mut self,
        c1: u16,
        capabilities: Capabilities,
        timeout: Duration,
    ) -> Result<ChannelId, AttackError> {
        let (id, cookie2) = self.new_and_acknowledge(c1, timeout)?;
        self.send_sealed(
            ChannelId::DEFAULT,
            &[Message::ChannelFinalize {
                channel: id,
                cookie2: &cookie2,
                capabilities,
            }],
        )?;
        Ok(id)
    }

    /// Opens a channel with NEW / ACKNOWLEDGE and then a CHANNEL_COOKIE heading the channel's
    /// first packet, followed by `early` (PROTOCOL.md §6 step 4); returns its id.
    pub fn open_channel_with_cookie(
        &mut self,
        c1: u16,
        capabilities: Capabilities,
        early: &[Message<'_>],
        timeout: Duration,
    ) -> Result<ChannelId, AttackError> {
        let (id, cookie2) = self.new_and_acknowledge(c1, timeout)?;
        let mut messages = vec![Message::ChannelCookie {
            cookie2: &cookie2,
            capabilities,
        }];
        messages.extend_from_slice(early);
        self.send_sealed(id, &messages)?;
        Ok(id)
    }

    /// CHANNEL_NEW and the node's CHANNEL_ACKNOWLEDGE: the channel id and cookie2.
    fn new_and_acknowledge(
        &mut self,
        c1: u16,
        timeout: Duration,
    ) -> Result<(ChannelId, [u8; MAC_LEN]), AttackError> {
        let deadline = Instant::now() + timeout;
        let cookie1: [u8; MAC_LEN] = self.rng.r#gen();
        self.send_sealed(
            ChannelId::DEFAULT,
            &[Message::ChannelNew {
                c1,
                cookie1: &cookie1,
            }],
        )?;
        while let Some(received) = self.recv(deadline)? {
            for message in received.messages() {
                if let Message::ChannelAcknowledge {
                    channel,
                    cookie1: echoed,
                    cookie2,
                } = message
                    && channel.c1() == c1
                    && *echoed == cookie1
                {
                    return Ok((channel, *cookie2));
                }
            }
        }
        Err(AttackError::Timeout("CHANNEL_ACKNOWLEDGE"))
    }

    /// Closes a channel with a sealed CHANNEL_CLOSE on the default channel.
    pub fn close_channel(&mut self, id: ChannelId) -> Result<(), AttackError> {
        self.send_sealed(
            ChannelId::DEFAULT,
            &[Message::ChannelClose {
                channel: id,
                reason: CloseReason::Normal,
            }],
        )
    }

    /// A plaintext RESET to the node: "I hold no session for this packet" (PROTOCOL.md §4). The
    /// node answers with a new handshake towards us, at most one per 5 s.
    pub fn send_reset(&self) -> Result<(), AttackError> {
        let datagram = self.plain_packet(
            None,
            self.node_peer,
            ChannelId::DEFAULT,
            None,
            &[Message::Reset { reason: 0 }],
        )?;
        self.send_raw(&datagram)?;
        Ok(())
    }

    /// Waits for a HANDSHAKE_INIT from the node (after [`Attacker::send_reset`]).
    pub fn await_init(&mut self, deadline: Instant) -> Result<Received, AttackError> {
        while let Some(received) = self.recv(deadline)? {
            if !received.sealed
                && matches!(
                    received.messages().first(),
                    Some(Message::HandshakeInit { .. })
                )
            {
                return Ok(received);
            }
        }
        Err(AttackError::Timeout("HANDSHAKE_INIT"))
    }
}
