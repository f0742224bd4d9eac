//! Stateless channel cookies (PROTOCOL.md §6): 16-byte keyed BLAKE3 MACs under a secret that
//! rotates every 120 s, the previous secret staying valid, so a responder keeps no state until a
//! cookie comes back.

use crate::session::mac::RotatingKeys;
use crate::wire::{ChannelId, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Length of every cookie on the wire.
pub const COOKIE_LEN: usize = 16;

pub use crate::session::mac::{CookieCheck, constant_time_eq};

/// This node's rotating channel-cookie secrets (current and previous accepted, PROTOCOL.md §6).
#[derive(Clone, Debug)]
pub struct CookieSecrets {
    keys: RotatingKeys,
}

impl CookieSecrets {
    /// Secrets that rotate every `rotation`, counted from `now`.
    pub fn new(seed: [u8; 32], now: Instant, rotation: Duration) -> CookieSecrets {
        CookieSecrets {
            keys: RotatingKeys::new(seed, "weft v1 cookie secret", now, rotation),
        }
    }

    /// Moves to the secret of `now`'s time bucket.
    pub fn advance(&mut self, now: Instant) {
        self.keys.advance(now);
    }

    /// When the current secret stops being current.
    pub fn next_rotation(&self) -> Instant {
        self.keys.next_rotation()
    }

    fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; COOKIE_LEN] {
        let mut hasher = blake3::Hasher::new_keyed(key);
        for part in parts {
            hasher.update(part);
        }
        let mut out = [0u8; COOKIE_LEN];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..COOKIE_LEN]);
        out
    }

    fn cookie1_under(key: &[u8; 32], initiator: PeerId, responder: PeerId, c1: u16) -> [u8; 16] {
        // PROTOCOL.md §6: cookie1 = MAC(secret_initiator, "c1" ‖ pid_i ‖ pid_r ‖ c1)
        Self::mac(key, &[b"c1", &initiator.0, &responder.0, &c1.to_be_bytes()])
    }

    fn cookie2_under(
        key: &[u8; 32],
        initiator: PeerId,
        responder: PeerId,
        channel: ChannelId,
        address: SocketAddr,
    ) -> [u8; 16] {
        // PROTOCOL.md §6: cookie2 = MAC(secret_responder, "c2" ‖ pid_i ‖ pid_r ‖ c1 ‖ c2 ‖ address)
        let mut encoded = [0u8; 19];
        let used = encode_address(address, &mut encoded);
        Self::mac(
            key,
            &[
                b"c2",
                &initiator.0,
                &responder.0,
                &channel.0.to_be_bytes(),
                &encoded[..used],
            ],
        )
    }

    /// cookie1 for a CHANNEL_NEW this node sends as initiator.
    pub fn cookie1(&self, initiator: PeerId, responder: PeerId, c1: u16) -> [u8; 16] {
        Self::cookie1_under(self.keys.current(), initiator, responder, c1)
    }

    /// Checks a cookie1 echoed in a CHANNEL_ACKNOWLEDGE.
    pub fn check_cookie1(
        &self,
        initiator: PeerId,
        responder: PeerId,
        c1: u16,
        cookie: &[u8; 16],
    ) -> CookieCheck {
        self.check(cookie, |key| {
            Self::cookie1_under(key, initiator, responder, c1)
        })
    }

    /// cookie2 for a CHANNEL_ACKNOWLEDGE this node sends as responder.
    pub fn cookie2(
        &self,
        initiator: PeerId,
        responder: PeerId,
        channel: ChannelId,
        address: SocketAddr,
    ) -> [u8; 16] {
        Self::cookie2_under(self.keys.current(), initiator, responder, channel, address)
    }

    /// Checks a cookie2 carried by CHANNEL_FINALIZE or CHANNEL_COOKIE.
    pub fn check_cookie2(
        &self,
        initiator: PeerId,
        responder: PeerId,
        channel: ChannelId,
        address: SocketAddr,
        cookie: &[u8; 16],
    ) -> CookieCheck {
        self.check(cookie, |key| {
            Self::cookie2_under(key, initiator, responder, channel, address)
        })
    }

    fn check(&self, cookie: &[u8; 16], compute: impl Fn(&[u8; 32]) -> [u8; 16]) -> CookieCheck {
        self.keys.check(cookie, compute)
    }
}

/// A transport address as MAC input: family byte, address bytes, port.
fn encode_address(address: SocketAddr, out: &mut [u8; 19]) -> usize {
    match address {
        SocketAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.ip().octets());
            out[5..7].copy_from_slice(&v4.port().to_be_bytes());
            7
        }
        SocketAddr::V6(v6) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&v6.ip().octets());
            out[17..19].copy_from_slice(&v6.port().to_be_bytes());
            19
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const I: PeerId = PeerId([1; 16]);
    const R: PeerId = PeerId([2; 16]);

    #[test]
    fn cookie2_is_valid_for_two_rotations_then_expired_then_unknown() {
        let start = Instant::now();
        let rotation = Duration::from_secs(120);
        let mut secrets = CookieSecrets::new([5; 32], start, rotation);
        let channel = ChannelId::new(7, 0x8001);
        let cookie = secrets.cookie2(I, R, channel, addr("10.0.0.1:9"));
        let check = |s: &CookieSecrets| s.check_cookie2(I, R, channel, addr("10.0.0.1:9"), &cookie);
        assert_eq!(check(&secrets), CookieCheck::Valid);
        secrets.advance(start + rotation);
        assert_eq!(
            check(&secrets),
            CookieCheck::Valid,
            "previous secret stays valid"
        );
        secrets.advance(start + rotation * 2);
        assert_eq!(check(&secrets), CookieCheck::Expired);
        secrets.advance(start + rotation * 3);
        assert_eq!(check(&secrets), CookieCheck::Mismatch);
    }

    #[test]
    fn cookie2_binds_address_ids_and_channel() {
        let secrets = CookieSecrets::new([5; 32], Instant::now(), Duration::from_secs(120));
        let channel = ChannelId::new(7, 0x8001);
        let cookie = secrets.cookie2(I, R, channel, addr("10.0.0.1:9"));
        assert_eq!(
            secrets.check_cookie2(I, R, channel, addr("10.0.0.1:10"), &cookie),
            CookieCheck::Mismatch
        );
        assert_eq!(
            secrets.check_cookie2(R, I, channel, addr("10.0.0.1:9"), &cookie),
            CookieCheck::Mismatch
        );
        assert_eq!(
            secrets.check_cookie2(I, R, ChannelId::new(7, 0x8002), addr("10.0.0.1:9"), &cookie),
            CookieCheck::Mismatch
        );
        assert_eq!(
            secrets.check_cookie2(I, R, channel, addr("[::1]:9"), &cookie),
            CookieCheck::Mismatch
        );
    }

    #[test]
    fn different_seeds_give_different_cookies() {
        let now = Instant::now();
        let a = CookieSecrets::new([1; 32], now, Duration::from_secs(120));
        let b = CookieSecrets::new([2; 32], now, Duration::from_secs(120));
        assert_ne!(a.cookie1(I, R, 3), b.cookie1(I, R, 3));
        assert_eq!(
            a.check_cookie1(I, R, 3, &a.cookie1(I, R, 3)),
            CookieCheck::Valid
        );
        assert_eq!(
            a.check_cookie1(I, R, 4, &a.cookie1(I, R, 3)),
            CookieCheck::Mismatch
        );
    }
}
