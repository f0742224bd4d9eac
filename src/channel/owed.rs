//! The control a channel owes its peer (PROTOCOL.md §4 WINDOW, §6 step 4, §7.7): PONGs to
//! answer, the responder's confirmation, a keep-alive PING. Kept as a few flags and tokens on the
//! channel's data state and written when the driver asks for a packet
//! (`Connection::write_packet`), straight into the buffer it lends (the GSO batch slot): riding
//! in the channel's next data packet when one goes, or in a packet of their own. The packet's
//! number is taken when it is written and the packet is sealed there, so no control datagram of
//! a channel is built aside and copied (issue 11 point 2).
//!
//! Why pending state and not a queued datagram: a queued datagram is a 1452-byte buffer built
//! when the state changed and copied into the driver's buffer later; what a channel owes is at
//! most a few bytes of state, the answer leaves in the packet the channel writes anyway, and a
//! PING flood cannot make it grow: past [`OWED_PONGS`] a PING is dropped and counted
//! (`answer_limit`), and the flags are flags however many requests set them.
//!
//! What it costs an idle channel: 8 bytes. The flags are a byte ([`OwedFlags`]) that the
//! channel's data state keeps beside its other flags, and the PONG tokens ([`OwedPongs`]) a
//! pointer, null until the first PING that is not a keep-alive; [`Owed`] is the two lent
//! together.

#![deny(clippy::arithmetic_side_effects)]

use crate::wire::Message;

/// Most PONGs one channel owes at once; more PINGs before its next packet are dropped and
/// counted. Small: an honest peer's PINGs on a channel are keep-alives (a flag here, not a
/// token) and the reliability layer's probes (answered by an ACK, not a PONG).
pub(crate) const OWED_PONGS: usize = 16;

/// The token of a keep-alive PING; its PONG is not reported to the application.
pub(crate) const KEEP_ALIVE_TOKEN: [u8; 8] = *b"weft-ka!";

/// The PONG tokens a channel owes, boxed on the first PING that is not a keep-alive and kept
/// for the channel's life: a channel that only keeps alive holds a null pointer, and answering
/// a stream of PINGs allocates once.
#[derive(Debug, Default)]
struct Pongs {
    tokens: [[u8; 8]; OWED_PONGS],
    count: usize,
}

/// The PONG tokens a channel owes: null until the first PING that is not a keep-alive.
#[derive(Debug, Default)]
pub(crate) struct OwedPongs(Option<Box<Pongs>>);

impl OwedPongs {
    /// How many PONGs with a token of their own are owed.
    pub(crate) fn count(&self) -> usize {
        self.0.as_ref().map_or(0, |pongs| pongs.count)
    }
}

/// The responder's confirmation: a WINDOW with the credit granted when it is written.
const CONFIRM: u8 = 1;
/// A PONG to the peer's keep-alive PING (its token is fixed, so a flag).
const KEEP_ALIVE_PONG: u8 = 2;
/// Our own keep-alive PING (§7.7).
const KEEP_ALIVE_PING: u8 = 4;

/// The control a channel owes that needs no token: a byte of flags.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OwedFlags(u8);

impl OwedFlags {
    fn take(&mut self, flag: u8) -> bool {
        let set = self.0 & flag != 0;
        self.0 &= !flag;
        set
    }
}

/// What a channel owes its peer, written at the front of its next packet: its tokens and its
/// flags, lent together by the channel's data state (`ChannelData::owed`).
#[derive(Debug)]
pub(crate) struct Owed<'a> {
    pongs: &'a mut OwedPongs,
    flags: &'a mut OwedFlags,
}

/// True when a channel with these tokens and flags owes nothing.
pub(crate) fn owes_nothing(pongs: &OwedPongs, flags: OwedFlags) -> bool {
    flags.0 == 0 && pongs.count() == 0
}

impl<'a> Owed<'a> {
    /// The control owed by a channel holding `pongs` and `flags`.
    pub(crate) fn new(pongs: &'a mut OwedPongs, flags: &'a mut OwedFlags) -> Owed<'a> {
        Owed { pongs, flags }
    }

    /// True when nothing is owed.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        owes_nothing(self.pongs, *self.flags)
    }

    /// Owes a PONG to `token`; false (nothing owed) when [`OWED_PONGS`] are owed already.
    pub(crate) fn owe_pong(&mut self, token: [u8; 8]) -> bool {
        if token == KEEP_ALIVE_TOKEN {
            self.flags.0 |= KEEP_ALIVE_PONG;
            return true;
        }
        let pongs = self.pongs.0.get_or_insert_with(Box::default);
        let Some(slot) = pongs.tokens.get_mut(pongs.count) else {
            return false;
        };
        *slot = token;
        pongs.count = pongs.count.saturating_add(1);
        true
    }

    /// Owes the responder's confirmation (a WINDOW).
    pub(crate) fn owe_confirm(&mut self) {
        self.flags.0 |= CONFIRM;
    }

    /// Owes a keep-alive PING.
    pub(crate) fn owe_keep_alive(&mut self) {
        self.flags.0 |= KEEP_ALIVE_PING;
    }

    /// How many PONGs with a token of their own are owed.
    #[cfg(test)]
    pub(crate) fn pong_count(&self) -> usize {
        self.pongs.count()
    }

    /// Writes what is owed into `region`, the front of a packet's payload; the confirmation
    /// carries `window` (the credit granted now, §7.4). Returns the bytes written; what was
    /// written is no longer owed, what did not fit stays owed for the next packet.
    pub(crate) fn write(
        &mut self,
        region: &mut [u8],
        (max_message, max_bytes): (u64, u64),
    ) -> usize {
        let mut at = 0usize;
        let mut emit = |message: &Message<'_>| -> bool {
            match region.get_mut(at..).map(|rest| message.emit(rest)) {
                Some(Ok(written)) => {
                    at = at.saturating_add(written);
                    true
                }
                _ => false,
            }
        };
        let mut left = OwedFlags::default();
        let window = Message::Window {
            max_message,
            max_bytes,
        };
        let flagged = [
            (CONFIRM, window),
            (
                KEEP_ALIVE_PONG,
                Message::Pong {
                    token: &KEEP_ALIVE_TOKEN,
                },
            ),
            (
                KEEP_ALIVE_PING,
                Message::Ping {
                    token: &KEEP_ALIVE_TOKEN,
                },
            ),
        ];
        for (flag, message) in &flagged {
            if self.flags.take(*flag) && !emit(message) {
                left.0 |= *flag;
            }
        }
        *self.flags = left;
        if let Some(pongs) = self.pongs.0.as_mut() {
            let mut sent = 0usize;
            for token in pongs.tokens.iter().take(pongs.count) {
                if !emit(&Message::Pong { token }) {
                    break;
                }
                sent = sent.saturating_add(1);
            }
            // What did not fit moves to the front, in order (a few tokens at most).
            pongs.tokens.copy_within(sent..pongs.count, 0);
            pongs.count = pongs.count.saturating_sub(sent);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ChannelId, Flags, Header, PeerId, parse_payload};

    fn written(owed: &mut Owed<'_>, room: usize) -> Vec<String> {
        let mut region = vec![0xAAu8; room];
        let len = owed.write(&mut region, (7, 9000));
        if len == 0 {
            return Vec::new();
        }
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: PeerId([1; 16]),
            recipient: PeerId([2; 16]),
            channel: ChannelId(0x0001_0002),
            sequence: Some(1),
        };
        parse_payload(&header, &region[..len])
            .expect("valid messages")
            .map(|m| format!("{m:?}"))
            .collect()
    }

    #[test]
    fn pongs_past_the_bound_are_refused_and_keep_alives_take_no_token() {
        let (mut pongs, mut flags) = Default::default();
        let mut owed = Owed::new(&mut pongs, &mut flags);
        assert!(owed.is_empty());
        for n in 0..OWED_PONGS {
            assert!(owed.owe_pong([n as u8 + 1; 8]));
        }
        assert!(!owed.owe_pong([99; 8]));
        assert_eq!(owed.pong_count(), OWED_PONGS);
        // A keep-alive is a flag, however many come.
        for _ in 0..100 {
            assert!(owed.owe_pong(KEEP_ALIVE_TOKEN));
        }
        assert_eq!(owed.pong_count(), OWED_PONGS);
        let all = written(&mut owed, 1400);
        assert_eq!(all.len(), OWED_PONGS + 1);
        assert!(owed.is_empty());
        // Emptied, it owes nothing and takes PINGs again, in the box it kept.
        assert!(written(&mut owed, 1400).is_empty());
        assert!(owed.owe_pong([1; 8]));
    }

    #[test]
    fn what_does_not_fit_stays_owed_in_order() {
        let (mut pongs, mut flags) = Default::default();
        let mut owed = Owed::new(&mut pongs, &mut flags);
        owed.owe_confirm();
        owed.owe_keep_alive();
        for n in 1..=3u8 {
            owed.owe_pong([n; 8]);
        }
        // Room for the WINDOW, the PING and one PONG (9 bytes each for the PING and PONG).
        let window = Message::Window {
            max_message: 7,
            max_bytes: 9000,
        };
        let first = written(&mut owed, window.encoded_len() + 9 + 9 + 4);
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first[0].starts_with("Window"), "{first:?}");
        assert_eq!(owed.pong_count(), 2);
        let rest = written(&mut owed, 100);
        let expected: Vec<String> = (2..=3u8)
            .map(|n| format!("{:?}", Message::Pong { token: &[n; 8] }))
            .collect();
        assert_eq!(rest, expected);
        assert!(owed.is_empty());
    }
}
