//! Per-channel keys and packet protection (PROTOCOL.md §5): each channel's key is derived from
//! the session's direction secret, sealed with AES-256-GCM through ring, with the sequence number
//! as nonce and the header as associated data. No allocation per packet.

use super::window::{CompactWindow, Seen};
use crate::wire::ChannelId;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Length of the AEAD tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// BLAKE3 context of the channel-key derivation (PROTOCOL.md §5).
const CHANNEL_KEY_CONTEXT: &str = "weft v1 channel key";

/// The replay window of one channel, direction and session: 2048 sequence numbers (§5: at least
/// 2048), its bitmap boxed only while packets arrive out of order (see [`CompactWindow`]).
pub type ReplayWindow = CompactWindow<32>;

/// Why a packet was not opened. Both are silent drops, counted by [`reason`](Self::reason).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The sequence number was seen before or is behind the window.
    #[error("replayed or too old sequence number")]
    Replay,
    /// The tag did not verify (forged, corrupted, or sealed under another key).
    #[error("packet does not authenticate")]
    Authentication,
}

impl OpenError {
    /// A snake_case metric label.
    pub fn reason(self) -> &'static str {
        match self {
            OpenError::Replay => "replay",
            OpenError::Authentication => "authentication",
        }
    }
}

/// A channel's 32-byte key in one direction:
/// `BLAKE3.derive_key("weft v1 channel key", direction_secret ‖ channel_id as 4 bytes BE)`.
pub fn channel_key(direction_secret: &[u8; 32], channel: ChannelId) -> [u8; 32] {
    // PROTOCOL.md §5: key material = direction secret ‖ channel id (big-endian, 4 bytes).
    let mut material = [0u8; 36];
    material[..32].copy_from_slice(direction_secret);
    material[32..].copy_from_slice(&channel.0.to_be_bytes());
    blake3::derive_key(CHANNEL_KEY_CONTEXT, &material)
}

/// One AES-256-GCM key. The nonce is 4 zero bytes ‖ the u64 sequence number (big-endian).
pub struct PacketKey {
    key: LessSafeKey,
}

impl fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketKey").finish_non_exhaustive()
    }
}

fn nonce(sequence: u64) -> Nonce {
    // PROTOCOL.md §5: nonce = 4 zero bytes ‖ sequence number; a sequence number is never reused
    // under one key (§3), so a nonce never repeats.
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&sequence.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

impl PacketKey {
    /// The key with raw bytes `key`.
    pub fn new(key: &[u8; 32]) -> PacketKey {
        // ring accepts any 32-byte key for AES-256; the length is fixed by the type.
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes 32-byte keys"));
        PacketKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// The key of `channel` under `direction_secret`.
    pub fn for_channel(direction_secret: &[u8; 32], channel: ChannelId) -> PacketKey {
        PacketKey::new(&channel_key(direction_secret, channel))
    }

    /// Encrypts `payload` in place with `header` as associated data and writes the tag.
    pub fn seal_in_place(
        &self,
        sequence: u64,
        header: &[u8],
        payload: &mut [u8],
        tag_out: &mut [u8; TAG_LEN],
    ) {
        // ring fails only for payloads beyond GCM's 64 GiB limit, far past any datagram; a
        // failure leaves a zero tag, which no receiver accepts.
        match self
            .key
            .seal_in_place_separate_tag(nonce(sequence), Aad::from(header), payload)
        {
            Ok(tag) => tag_out.copy_from_slice(tag.as_ref()),
            Err(_) => *tag_out = [0; TAG_LEN],
        }
    }

    /// Decrypts `ciphertext_and_tag` in place; returns the plaintext length (the tag's 16 bytes
    /// at the end are then meaningless).
    pub fn open_in_place(
        &self,
        sequence: u64,
        header: &[u8],
        ciphertext_and_tag: &mut [u8],
    ) -> Result<usize, OpenError> {
        let len = ciphertext_and_tag
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(OpenError::Authentication)?;
        let (ciphertext, tag) = ciphertext_and_tag.split_at_mut(len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError::Authentication)?;
        self.key
            .open_in_place_separate_tag(
                nonce(sequence),
                Aad::from(header),
                Tag::from(tag),
                ciphertext,
                0..,
            )
            .map(|plain| plain.len())
            .map_err(|_| OpenError::Authentication)
    }
}

/// Packets a channel seals or opens between two idle checks
/// ([`ChannelCrypto::shed_if_idle`]) before it keeps its expanded keys.
const BUSY_PACKETS: u8 = 8;

/// One channel's protection within a session: both directions' keys, the next sequence number
/// to send and the replay window of what was received.
///
/// The expanded AES keys (two ring key schedules, about 1 KiB) are kept only while the channel
/// is busy: until it has carried [`BUSY_PACKETS`] packets since the last idle check, each
/// packet expands the key it needs on the stack (a few hundred nanoseconds, against a
/// handshake's tens of microseconds), and an idle check that finds it carried fewer drops them
/// again ([`shed_if_idle`](Self::shed_if_idle)). So a node holding many idle peers, whose
/// channels carry a set-up and a keep-alive now and then, pays for the raw keys, the counters
/// and the replay window only. The sequence number and the window are never shed, so no nonce
/// is reused and no replay let through (PROTOCOL.md §3, §5).
pub struct ChannelCrypto {
    /// Both directions' raw keys, and their schedules while busy. An idle session's
    /// [`ChannelKeys`] drops them (issue 12: 64 bytes per idle channel) and derives the same
    /// keys from its secrets again when the channel is next used; only a lone `ChannelCrypto`
    /// (not in a [`ChannelKeys`]) always keeps them.
    keys: Option<Box<Keys>>,
    /// Packets sealed or opened since the last idle check, up to [`BUSY_PACKETS`].
    uses: u8,
    next_send: u64,
    /// Packets sealed under this key, whatever their numbers.
    sealed: u64,
    window: ReplayWindow,
}

/// A channel's raw keys, and their schedules while the channel is busy.
struct Keys {
    send: [u8; 32],
    receive: [u8; 32],
    expanded: Option<Box<Expanded>>,
}

impl Keys {
    fn derive(send_secret: &[u8; 32], receive_secret: &[u8; 32], channel: ChannelId) -> Box<Keys> {
        Box::new(Keys {
            send: channel_key(send_secret, channel),
            receive: channel_key(receive_secret, channel),
            expanded: None,
        })
    }
}

/// Both directions' key schedules, boxed so that an idle channel holds a null pointer only.
struct Expanded {
    send: PacketKey,
    receive: PacketKey,
}

impl fmt::Debug for ChannelCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelCrypto")
            .field("keys", &self.keys.is_some())
            .field("expanded", &self.is_expanded())
            .field("next_send", &self.next_send)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl ChannelCrypto {
    /// Keys for `channel` from a session's two direction secrets.
    pub fn new(send_secret: &[u8; 32], receive_secret: &[u8; 32], channel: ChannelId) -> Self {
        ChannelCrypto {
            keys: Some(Keys::derive(send_secret, receive_secret, channel)),
            uses: 0,
            next_send: 0,
            sealed: 0,
            window: ReplayWindow::new(),
        }
    }

    /// The expanded keys, once the channel is busy; None before (one more packet counted).
    fn busy_keys(&mut self) -> Option<&Expanded> {
        self.uses = self.uses.saturating_add(1);
        let keys = self.keys.as_mut()?;
        if keys.expanded.is_none() && self.uses < BUSY_PACKETS {
            return None;
        }
        let (send, receive) = (&keys.send, &keys.receive);
        Some(keys.expanded.get_or_insert_with(|| {
            Box::new(Expanded {
                send: PacketKey::new(send),
                receive: PacketKey::new(receive),
            })
        }))
    }

    /// Derives the raw keys again if an idle session dropped them ([`ChannelKeys`] does this
    /// before handing the channel out, so every packet finds them).
    fn restore(&mut self, send_secret: &[u8; 32], receive_secret: &[u8; 32], channel: ChannelId) {
        if self.keys.is_none() {
            self.keys = Some(Keys::derive(send_secret, receive_secret, channel));
        }
    }

    /// Sheds (see [`shed`](Self::shed)) and drops the raw keys too: only for a channel whose
    /// [`ChannelKeys`] can derive them again.
    fn forget(&mut self) {
        self.shed();
        self.keys = None;
    }

    /// Seals under the send key: the kept schedule, or one expanded for this packet.
    fn seal_under(
        &mut self,
        sequence: u64,
        header: &[u8],
        payload: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) {
        match self.busy_keys() {
            Some(keys) => keys.send.seal_in_place(sequence, header, payload, tag),
            None => match &self.keys {
                Some(keys) => {
                    PacketKey::new(&keys.send).seal_in_place(sequence, header, payload, tag)
                }
                // Not reached: `ChannelKeys` restores the keys before handing a channel out. A
                // zero tag is what a sealing failure leaves, and no receiver accepts it.
                None => *tag = [0; TAG_LEN],
            },
        }
    }

    /// Drops the expanded keys of an idle channel, the next packets expand them again, and
    /// folds the replay window back inline where it can (its answers stay the same).
    pub fn shed(&mut self) {
        if let Some(keys) = self.keys.as_mut() {
            keys.expanded = None;
        }
        self.uses = 0;
        self.window.compact();
    }

    /// The idle check, once per keep-alive interval of a peer that is heard: a channel that
    /// carried fewer than [`BUSY_PACKETS`] packets since the last one sheds (see
    /// [`shed`](Self::shed)), and the count starts again.
    pub fn shed_if_idle(&mut self) {
        if self.uses < BUSY_PACKETS {
            self.shed();
        }
        self.uses = 0;
    }

    /// True while the expanded keys are held.
    pub fn is_expanded(&self) -> bool {
        self.keys
            .as_ref()
            .is_some_and(|keys| keys.expanded.is_some())
    }

    /// True while the raw keys are held (an idle session's channels drop them).
    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// The sequence number the next sealed packet will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_send
    }

    /// How many packets were sealed on this channel under this key (the rekey policy counts
    /// these, PROTOCOL.md §5).
    pub fn packets_sent(&self) -> u64 {
        self.sealed
    }

    /// Seals the next packet: takes a fresh sequence number (returned; the caller writes it into
    /// the header before sealing, since the header is the associated data, so it must call
    /// [`next_sequence`](Self::next_sequence) first and pass the same header here).
    pub fn seal(&mut self, header: &[u8], payload: &mut [u8], tag_out: &mut [u8; TAG_LEN]) -> u64 {
        let sequence = self.next_send;
        self.seal_under(sequence, header, payload, tag_out);
        // PROTOCOL.md §3: a sequence number is never reused under one key.
        self.next_send = self.next_send.saturating_add(1);
        self.sealed = self.sealed.saturating_add(1);
        sequence
    }

    /// True if a packet numbered `sequence` may be sealed: numbers under one key only go up,
    /// so no nonce is ever used twice whatever the caller's numbering does (a number that wrapped
    /// or went back is refused, not sealed).
    pub fn may_seal_at(&self, sequence: u64) -> bool {
        sequence >= self.next_send && sequence < u64::MAX
    }

    /// Seals a packet under an explicit sequence number: the channel's data path numbers its
    /// packets itself (one number space for acknowledgements and nonces, PROTOCOL.md §3).
    /// Returns false, sealing nothing, for a number [`may_seal_at`](Self::may_seal_at) refuses.
    #[must_use]
    pub fn seal_at(
        &mut self,
        sequence: u64,
        header: &[u8],
        payload: &mut [u8],
        tag_out: &mut [u8; TAG_LEN],
    ) -> bool {
        if !self.may_seal_at(sequence) {
            return false;
        }
        self.seal_under(sequence, header, payload, tag_out);
        self.next_send = sequence.saturating_add(1);
        self.sealed = self.sealed.saturating_add(1);
        true
    }

    /// Opens a received packet: the replay window is checked before decrypting and moves only
    /// after the tag verified (PROTOCOL.md §5), so a forged packet cannot push it forward.
    pub fn open(
        &mut self,
        sequence: u64,
        header: &[u8],
        ciphertext_and_tag: &mut [u8],
    ) -> Result<usize, OpenError> {
        if self.window.check(sequence) != Seen::Fresh {
            return Err(OpenError::Replay);
        }
        let len = match self.busy_keys() {
            Some(keys) => keys
                .receive
                .open_in_place(sequence, header, ciphertext_and_tag)?,
            None => match &self.keys {
                Some(keys) => PacketKey::new(&keys.receive).open_in_place(
                    sequence,
                    header,
                    ciphertext_and_tag,
                )?,
                // Not reached (see `seal_under`): nothing opens without the key.
                None => return Err(OpenError::Authentication),
            },
        };
        self.window.insert(sequence);
        Ok(len)
    }

    /// What the replay window says about `sequence` (for a driver that drops early).
    pub fn check_replay(&self, sequence: u64) -> Seen {
        self.window.check(sequence)
    }
}

/// The per-session cache of channel keys, keyed by channel id. Keys are derived when a channel
/// is first used (set-up, not per packet) and dropped with the channel.
///
/// Only channels the endpoint holds open get an entry (PROTOCOL.md §3: no state for what has
/// not passed a cookie): a sealed packet on a channel without one is opened with a key schedule
/// on the stack and kept only when the endpoint [`admit`](Self::admit)s the channel. The default
/// channel, which every session uses, lives inline, and so does the first other channel while
/// it is open (a peer holds one most of the time: a map's table and a boxed entry for it cost
/// 220 bytes, issue 12); the others sit in a hash map of boxed entries, so the cost of a packet
/// does not grow with the channels its sender holds.
///
/// A closed channel's id is remembered as retired for the rest of the session: PROTOCOL.md §6
/// never uses an id twice in a session, so its key and nonces never come back, and a replayed
/// packet of the closed channel is refused without a key. The endpoint bounds how many ids a
/// session may retire (a session that runs out is replaced, §6).
pub struct ChannelKeys {
    send_secret: [u8; 32],
    receive_secret: [u8; 32],
    default: Option<ChannelCrypto>,
    /// One channel besides the default one, by id.
    first: Option<(u32, ChannelCrypto)>,
    // Channel ids are peer-chosen: a seeded hasher (STYLE.md 16).
    // Boxed on purpose, made with the second other channel: absent, it is a null pointer, not
    // 48 bytes (issue 12).
    #[allow(clippy::box_collection)]
    channels: Option<Box<HashMap<u32, Box<ChannelCrypto>>>>,
    /// Made on the first close: most sessions never close a channel (issue 12: 40 bytes).
    // Seeded, as `channels`. Boxed on purpose: absent, it is a null pointer, not 48 bytes.
    #[allow(clippy::box_collection)]
    retired: Option<Box<HashSet<u32>>>,
}

impl fmt::Debug for ChannelKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelKeys")
            .field("channels", &self.len())
            .field("retired", &self.retired_count())
            .finish_non_exhaustive()
    }
}

impl ChannelKeys {
    /// An empty cache for a session with these direction secrets.
    pub fn new(send_secret: [u8; 32], receive_secret: [u8; 32]) -> ChannelKeys {
        ChannelKeys {
            send_secret,
            receive_secret,
            default: None,
            first: None,
            channels: None,
            retired: None,
        }
    }

    /// The channel's crypto state, derived on first use. The endpoint calls it only for the
    /// default channel and channels it holds open, never for a retired id.
    pub fn channel(&mut self, channel: ChannelId) -> &mut ChannelCrypto {
        let (send, receive) = (&self.send_secret, &self.receive_secret);
        let crypto = if channel.is_default() {
            self.default
                .get_or_insert_with(|| ChannelCrypto::new(send, receive, channel))
        } else {
            let inline = match &self.first {
                Some((id, _)) => *id == channel.0,
                None => !self
                    .channels
                    .as_ref()
                    .is_some_and(|map| map.contains_key(&channel.0)),
            };
            if inline {
                let (_, crypto) = self
                    .first
                    .get_or_insert_with(|| (channel.0, ChannelCrypto::new(send, receive, channel)));
                crypto
            } else {
                self.channels
                    .get_or_insert_with(Box::default)
                    .entry(channel.0)
                    .or_insert_with(|| Box::new(ChannelCrypto::new(send, receive, channel)))
            }
        };
        crypto.restore(send, receive, channel);
        crypto
    }

    /// Another channel's entry, restored by the caller if it needs the keys.
    fn others_mut(&mut self, channel: ChannelId) -> Option<&mut ChannelCrypto> {
        let map = self.channels.as_mut()?;
        map.get_mut(&channel.0).map(|crypto| &mut **crypto)
    }

    /// Every channel's crypto state.
    fn all_mut(&mut self) -> impl Iterator<Item = &mut ChannelCrypto> {
        let first = self.first.as_mut().map(|(_, crypto)| crypto);
        let others = self.channels.iter_mut().flat_map(|map| map.values_mut());
        let others = others.map(|crypto| &mut **crypto);
        self.default.iter_mut().chain(first).chain(others)
    }

    /// Whether `channel`'s entry holds its raw keys now, without restoring them (tests).
    #[cfg(test)]
    fn get_unrestored_keys(&self, channel: ChannelId) -> Option<bool> {
        if channel.is_default() {
            return self.default.as_ref().map(ChannelCrypto::has_keys);
        }
        match &self.first {
            Some((id, crypto)) if *id == channel.0 => Some(crypto.has_keys()),
            _ => self
                .channels
                .as_ref()
                .and_then(|map| map.get(&channel.0))
                .map(|c| c.has_keys()),
        }
    }

    /// Every channel's crypto state, to read.
    fn all(&self) -> impl Iterator<Item = &ChannelCrypto> {
        let first = self.first.as_ref().map(|(_, crypto)| crypto);
        let others = self.channels.iter().flat_map(|map| map.values());
        let others = others.map(|crypto| &**crypto);
        self.default.iter().chain(first).chain(others)
    }

    /// The channel's crypto state if it was derived already.
    pub fn get(&mut self, channel: ChannelId) -> Option<&mut ChannelCrypto> {
        let (send, receive) = (&self.send_secret, &self.receive_secret);
        let crypto = if channel.is_default() {
            self.default.as_mut()
        } else {
            match &mut self.first {
                Some((id, crypto)) if *id == channel.0 => Some(crypto),
                _ => self
                    .channels
                    .as_mut()
                    .and_then(|map| map.get_mut(&channel.0))
                    .map(|crypto| &mut **crypto),
            }
        }?;
        crypto.restore(send, receive, channel);
        Some(crypto)
    }

    /// Opens a received packet of `channel`. A channel without an entry has its keys derived on
    /// the stack and cached only when the endpoint [`admit`](Self::admit)s it (the default
    /// channel is always admitted), so packets on made-up channel ids allocate nothing
    /// (PROTOCOL.md §3). A retired id is a replay: refused before any work.
    pub fn open(
        &mut self,
        channel: ChannelId,
        sequence: u64,
        header: &[u8],
        ciphertext_and_tag: &mut [u8],
    ) -> Result<usize, OpenError> {
        if let Some(crypto) = self.get(channel) {
            return crypto.open(sequence, header, ciphertext_and_tag);
        }
        if self.is_retired(channel) {
            return Err(OpenError::Replay);
        }
        // The key schedule lives on the stack until the tag verified; a new channel's window
        // is empty, so any sequence number is fresh.
        let receive = PacketKey::for_channel(&self.receive_secret, channel);
        let len = receive.open_in_place(sequence, header, ciphertext_and_tag)?;
        if channel.is_default() {
            self.admit(channel, sequence);
        }
        Ok(len)
    }

    /// Keeps the keys of a channel the endpoint holds open, marking `sequence` (a packet of it
    /// that [`open`](Self::open) let through without an entry) as received, so it cannot be
    /// replayed. A retired id gets nothing.
    pub fn admit(&mut self, channel: ChannelId, sequence: u64) {
        if self.is_retired(channel) {
            return;
        }
        self.channel(channel).window.insert(sequence);
    }

    /// Drops the expanded and the raw keys of every channel (an idle session): see
    /// [`ChannelCrypto::shed`]. The raw keys are derived again from the session's secrets when
    /// a channel is next used, the same bytes as before (a derivation, not a choice), and the
    /// sequence numbers and replay windows stay, so nothing a packet is checked against
    /// changes.
    pub fn shed(&mut self) {
        self.all_mut().for_each(ChannelCrypto::forget);
    }

    /// The idle check of every channel (see [`ChannelCrypto::shed_if_idle`]): one that carried
    /// few packets since the last check drops its raw keys too.
    pub fn shed_if_idle(&mut self) {
        for crypto in self.all_mut() {
            if crypto.uses < BUSY_PACKETS {
                crypto.forget();
            }
            crypto.uses = 0;
        }
    }

    /// Drops the expanded and raw keys of one channel that nothing uses for now.
    pub fn shed_channel(&mut self, channel: ChannelId) {
        let crypto = if channel.is_default() {
            self.default.as_mut()
        } else {
            match &mut self.first {
                Some((id, crypto)) if *id == channel.0 => Some(crypto),
                _ => self.others_mut(channel),
            }
        };
        if let Some(crypto) = crypto {
            crypto.forget();
        }
    }

    /// Forgets a closed channel's keys and retires its id for the rest of the session (§6: never
    /// used twice). The default channel is never closed.
    pub fn remove(&mut self, channel: ChannelId) {
        if channel.is_default() {
            return;
        }
        if self.first.as_ref().is_some_and(|(id, _)| *id == channel.0) {
            self.first = None;
        } else {
            if let Some(map) = self.channels.as_mut() {
                map.remove(&channel.0);
                if map.is_empty() {
                    self.channels = None;
                }
            }
        }
        self.retired
            .get_or_insert_with(Box::default)
            .insert(channel.0);
    }

    /// True if `channel` was closed in this session: it may not open again (PROTOCOL.md §6).
    pub fn is_retired(&self, channel: ChannelId) -> bool {
        self.retired
            .as_ref()
            .is_some_and(|retired| retired.contains(&channel.0))
    }

    /// How many ids this session has retired.
    pub fn retired_count(&self) -> usize {
        self.retired.as_ref().map_or(0, |retired| retired.len())
    }

    /// The most packets any channel has sealed under this session (for the rekey threshold).
    pub fn max_packets_sent(&self) -> u64 {
        self.all()
            .map(ChannelCrypto::packets_sent)
            .max()
            .unwrap_or(0)
    }

    /// Packets sealed under these keys on the default channel and every open channel, summed
    /// (an operator's view: a closed channel's count goes with its keys).
    pub fn total_packets_sent(&self) -> u64 {
        self.all()
            .fold(0, |sum, crypto| sum.saturating_add(crypto.packets_sent()))
    }

    /// Number of channels with derived keys.
    pub fn len(&self) -> usize {
        usize::from(self.default.is_some())
            .saturating_add(usize::from(self.first.is_some()))
            .saturating_add(self.channels.as_ref().map_or(0, |map| map.len()))
    }

    /// True if no channel has keys yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the keys, returning the heap each part held, read on `live` (see
    /// [`crate::heap::freed`]).
    pub fn heap_parts(mut self, live: &dyn Fn() -> i64) -> [(&'static str, i64); 5] {
        let mut expanded = 0i64;
        let mut raw = 0i64;
        let mut windows = 0i64;
        for crypto in self.all_mut() {
            expanded = expanded.saturating_add(crate::heap::freed(live, || {
                if let Some(keys) = crypto.keys.as_mut() {
                    keys.expanded = None;
                }
            }));
            raw = raw.saturating_add(crate::heap::freed(live, || crypto.keys = None));
            windows = windows.saturating_add(crate::heap::freed(live, || {
                crypto.window = ReplayWindow::new()
            }));
        }
        [
            ("channel keys: expanded AES schedules", expanded),
            ("channel keys: raw keys (box)", raw),
            ("channel keys: boxed replay windows", windows),
            (
                "channel keys: map and boxed entries",
                crate::heap::freed(live, || drop(self.channels.take())),
            ),
            (
                "channel keys: retired ids",
                crate::heap::freed(live, || drop(self.retired.take())),
            ),
        ]
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
