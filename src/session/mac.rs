//! Cheap before expensive (PROTOCOL.md §5, seeds 000 and 004): mac1 on every IK INIT, the
//! handshake cookie a loaded responder hands out instead of doing a DH, the echo that ties a
//! HANDSHAKE_COOKIE to its INIT, and the load detector that decides when cookies are required.
//!
//! [`RotatingKeys`] serves both stateless cookies: this layer's handshake cookie and, one layer
//! up, the channel cookies of `crate::channel::cookie`.

use crate::wire::PeerId;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Length of mac1, the cookie and the echo.
pub const MAC_LEN: usize = 16;
/// BLAKE3 context of the mac1 key (PROTOCOL.md §5).
const MAC1_CONTEXT: &str = "weft v1 mac1";
/// BLAKE3 context of the cookie secrets.
const COOKIE_SECRET_CONTEXT: &str = "weft v1 handshake cookie secret";
/// How often the cookie secret rotates (PROTOCOL.md §5).
pub const COOKIE_ROTATION: Duration = Duration::from_secs(120);
/// Handshakes per second above which a responder asks for cookies (boringtun's value).
pub const DEFAULT_HANDSHAKE_RATE: u32 = 100;

/// Compares two MACs in time independent of where they differ.
pub fn constant_time_eq(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn truncate(hash: blake3::Hash) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&hash.as_bytes()[..MAC_LEN]);
    out
}

/// The mac1 key of one responder, derived once from its X25519 static key.
#[derive(Clone)]
pub struct Mac1Key([u8; 32]);

impl std::fmt::Debug for Mac1Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac1Key(..)")
    }
}

impl Mac1Key {
    /// `derive_key("weft v1 mac1", responder x25519 pk)` (PROTOCOL.md §5).
    pub fn new(responder_x25519: &[u8; 32]) -> Mac1Key {
        Mac1Key(blake3::derive_key(MAC1_CONTEXT, responder_x25519))
    }

    /// mac1 over `covered` = packet[0 .. mac1 offset]: the header and the INIT fields before mac1.
    pub fn compute(&self, covered: &[u8]) -> [u8; MAC_LEN] {
        truncate(blake3::keyed_hash(&self.0, covered))
    }

    /// True if `mac1` is right for `covered`. A responder drops an INIT that fails this before
    /// any other work (PROTOCOL.md §5).
    pub fn verify(&self, covered: &[u8], mac1: &[u8; MAC_LEN]) -> bool {
        constant_time_eq(&self.compute(covered), mac1)
    }
}

/// The HANDSHAKE_COOKIE echo: BLAKE3(body of the HANDSHAKE_INIT)[..16] (PROTOCOL.md §4).
pub fn init_echo(init_body: &[u8]) -> [u8; MAC_LEN] {
    truncate(blake3::hash(init_body))
}

/// What a cookie check concluded. An expired cookie means "not validated", not an error.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CookieCheck {
    /// Made under the current or the previous secret.
    Valid,
    /// Made under the secret before the previous one.
    Expired,
    /// Matches no recent secret: forged, or computed for another address or id.
    Mismatch,
}

impl CookieCheck {
    /// The metric label for a check's outcome.
    pub fn reason(self) -> &'static str {
        match self {
            CookieCheck::Valid => "valid",
            CookieCheck::Expired => "expired",
            CookieCheck::Mismatch => "mismatch",
        }
    }
}

/// Keys that rotate by time bucket (STYLE.md 8): key `n` is derived from a seed, a context and
/// `n`, so rotation needs no randomness at run time and holds exactly three keys — the current,
/// the previous (still accepted) and the one before (kept only to tell "expired" from
/// "mismatch"). Both stateless cookies of weft stand on it: the handshake cookie (§5) and the
/// channel cookies (§6).
#[derive(Clone)]
pub struct RotatingKeys {
    seed: [u8; 32],
    context: &'static str,
    epoch_zero: Instant,
    rotation: Duration,
    epoch: u64,
    /// The span of time whose bucket is `epoch` (`[from, until)`), so that `advance`, called
    /// per datagram, is two comparisons while the bucket holds: no 128-bit division.
    current: (Instant, Instant),
    keys: [[u8; 32]; 3],
}

impl std::fmt::Debug for RotatingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("RotatingKeys")
            .field("context", &self.context)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl RotatingKeys {
    /// Keys drawn from `seed` (the caller's randomness) under the BLAKE3 derivation `context`,
    /// rotating every `rotation`, counted from `now`.
    pub fn new(
        seed: [u8; 32],
        context: &'static str,
        now: Instant,
        rotation: Duration,
    ) -> RotatingKeys {
        let mut keys = RotatingKeys {
            seed,
            context,
            epoch_zero: now,
            rotation: rotation.max(Duration::from_millis(1)),
            epoch: 0,
            current: (now, now),
            keys: [[0; 32]; 3],
        };
        keys.rekey(0);
        keys
    }

    fn derive(&self, epoch: u64) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(self.context);
        hasher.update(&self.seed);
        hasher.update(&epoch.to_be_bytes());
        *hasher.finalize().as_bytes()
    }

    fn rekey(&mut self, epoch: u64) {
        self.epoch = epoch;
        let at = |n: u64| {
            let nanos = self.rotation.as_nanos().checked_mul(u128::from(n))?;
            let offset = Duration::from_nanos(u64::try_from(nanos).ok()?);
            self.epoch_zero.checked_add(offset)
        };
        // Unrepresentable bounds leave an empty span: every `advance` then divides.
        self.current = match (at(epoch), epoch.checked_add(1).and_then(at)) {
            (Some(from), Some(until)) => (from, until),
            _ => (self.epoch_zero, self.epoch_zero),
        };
        self.keys = [
            self.derive(epoch),
            self.derive(epoch.wrapping_sub(1)),
            self.derive(epoch.wrapping_sub(2)),
        ];
    }

    /// Moves to the key of `now`'s time bucket.
    pub fn advance(&mut self, now: Instant) {
        let (from, until) = self.current;
        if from <= now && now < until {
            return;
        }
        let elapsed = now.saturating_duration_since(self.epoch_zero);
        let epoch = elapsed
            .as_nanos()
            .checked_div(self.rotation.as_nanos())
            .unwrap_or(0) as u64;
        if epoch != self.epoch {
            self.rekey(epoch);
        }
    }

    /// When the current key stops being current (for the driver's timer).
    pub fn next_rotation(&self) -> Instant {
        let nanos = self
            .rotation
            .as_nanos()
            .saturating_mul(u128::from(self.epoch) + 1);
        let offset = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.epoch_zero
            .checked_add(offset)
            .or_else(|| self.epoch_zero.checked_add(self.rotation))
            .unwrap_or(self.epoch_zero)
    }

    /// The current key, for making a cookie.
    pub fn current(&self) -> &[u8; 32] {
        &self.keys[0]
    }

    /// Checks a cookie that came back against what `compute` makes under each recent key, in
    /// constant time per key.
    pub fn check(
        &self,
        cookie: &[u8; MAC_LEN],
        compute: impl Fn(&[u8; 32]) -> [u8; MAC_LEN],
    ) -> CookieCheck {
        let current = constant_time_eq(&compute(&self.keys[0]), cookie);
        let previous = constant_time_eq(&compute(&self.keys[1]), cookie);
        if current | previous {
            CookieCheck::Valid
        } else if constant_time_eq(&compute(&self.keys[2]), cookie) {
            CookieCheck::Expired
        } else {
            CookieCheck::Mismatch
        }
    }
}

/// The responder's handshake-cookie secret, rotating every 120 s with the previous one still
/// valid (PROTOCOL.md §5).
#[derive(Clone, Debug)]
pub struct RotatingSecret {
    keys: RotatingKeys,
}

impl RotatingSecret {
    /// Secrets drawn from `seed` (the caller's randomness), rotating every `rotation` from `now`.
    pub fn new(seed: [u8; 32], now: Instant, rotation: Duration) -> RotatingSecret {
        RotatingSecret {
            keys: RotatingKeys::new(seed, COOKIE_SECRET_CONTEXT, now, rotation),
        }
    }

    /// Moves to the secret of `now`'s 120-s bucket.
    pub fn advance(&mut self, now: Instant) {
        self.keys.advance(now);
    }

    /// When the current secret stops being current (for the driver's timer).
    pub fn next_rotation(&self) -> Instant {
        self.keys.next_rotation()
    }

    fn mac_under(key: &[u8; 32], address: SocketAddr, initiator: PeerId) -> [u8; MAC_LEN] {
        // PROTOCOL.md §5: cookie = MAC(secret, initiator's transport address ‖ peer id).
        let mut hasher = blake3::Hasher::new_keyed(key);
        match address.ip() {
            IpAddr::V4(ip) => hasher.update(&[4]).update(&ip.octets()),
            IpAddr::V6(ip) => hasher.update(&[6]).update(&ip.octets()),
        };
        hasher.update(&address.port().to_be_bytes());
        hasher.update(&initiator.0);
        truncate(hasher.finalize())
    }

    /// The cookie for an initiator at `address` claiming `initiator`, under the current secret.
    pub fn cookie(&self, address: SocketAddr, initiator: PeerId) -> [u8; MAC_LEN] {
        Self::mac_under(self.keys.current(), address, initiator)
    }

    /// Checks a cookie that came back, in constant time per secret.
    pub fn check(
        &self,
        address: SocketAddr,
        initiator: PeerId,
        cookie: &[u8; MAC_LEN],
    ) -> CookieCheck {
        self.keys
            .check(cookie, |key| Self::mac_under(key, address, initiator))
    }
}

/// When a responder asks for a cookie instead of doing a handshake's DHs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LoadPolicy {
    /// Require cookies once more than this many INITs arrived in the current second.
    Rate(u32),
    /// Require a cookie on every INIT (configured, e.g. for a public bootstrap node).
    Always,
}

impl Default for LoadPolicy {
    fn default() -> Self {
        LoadPolicy::Rate(DEFAULT_HANDSHAKE_RATE)
    }
}

/// What to do with an INIT that passed mac1.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go on with the handshake (its DHs).
    Proceed,
    /// Answer with HANDSHAKE_COOKIE and do no DH.
    SendCookie,
}

/// Counts INITs per one-second bucket, like boringtun's `RateLimiter`, but fed `now` by the
/// caller instead of reading a clock or needing a reset timer.
#[derive(Clone, Debug)]
pub struct HandshakeRateLimiter {
    policy: LoadPolicy,
    bucket_start: Option<Instant>,
    count: u32,
}

impl HandshakeRateLimiter {
    /// A limiter with `policy`.
    pub fn new(policy: LoadPolicy) -> HandshakeRateLimiter {
        HandshakeRateLimiter {
            policy,
            bucket_start: None,
            count: 0,
        }
    }

    /// Counts one INIT at `now` and decides its fate. `cookie_valid` says whether it carried a
    /// cookie that [`RotatingSecret::check`] called valid. Kind-2 INITs are always answered with
    /// a cookie first (PROTOCOL.md §5), whatever the load: pass `always = true` for them.
    pub fn admit(&mut self, now: Instant, cookie_valid: bool, always: bool) -> Admission {
        let fresh_bucket = self
            .bucket_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if fresh_bucket {
            self.bucket_start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if cookie_valid {
            return Admission::Proceed;
        }
        let loaded = match self.policy {
            LoadPolicy::Always => true,
            LoadPolicy::Rate(limit) => self.count > limit,
        };
        if loaded || always {
            Admission::SendCookie
        } else {
            Admission::Proceed
        }
    }

    /// True if the current second has seen more INITs than the policy allows.
    pub fn is_under_load(&self) -> bool {
        match self.policy {
            LoadPolicy::Always => true,
            LoadPolicy::Rate(limit) => self.count > limit,
        }
    }
}

impl Default for HandshakeRateLimiter {
    fn default() -> Self {
        HandshakeRateLimiter::new(LoadPolicy::default())
    }
}

/// What a responder does with a HANDSHAKE_INIT, decided before any DH.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InitDecision {
    /// mac1 is wrong (or not zero for kind 2): drop silently and count.
    Drop,
    /// Answer with HANDSHAKE_COOKIE carrying this cookie; no DH, no state.
    SendCookie([u8; MAC_LEN]),
    /// Go on with the handshake.
    Proceed,
}

/// The responder's cheap checks in the order PROTOCOL.md §5 puts them: mac1, then cookie and
/// load. Nothing here performs a Diffie-Hellman or keeps per-initiator state.
#[derive(Debug)]
pub struct InitGate {
    mac1: Mac1Key,
    secret: RotatingSecret,
    limiter: HandshakeRateLimiter,
}

impl InitGate {
    /// A gate for the responder whose X25519 static key is `local_x25519`.
    pub fn new(local_x25519: &[u8; 32], secret: RotatingSecret, policy: LoadPolicy) -> InitGate {
        InitGate {
            mac1: Mac1Key::new(local_x25519),
            secret,
            limiter: HandshakeRateLimiter::new(policy),
        }
    }

    /// Decides on one INIT. `key_known` is true for kinds 1 and 3 (the initiator knew our static
    /// key, so mac1 must verify) and false for kind 2 (mac1 must be all zero, and a cookie is
    /// always required first). `covered` is packet[0 .. mac1 offset].
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        key_known: bool,
        covered: &[u8],
        mac1: &[u8; MAC_LEN],
        cookie: Option<&[u8; MAC_LEN]>,
    ) -> InitDecision {
        // PROTOCOL.md §5: a responder drops an INIT whose mac1 is wrong before any other work.
        let mac1_ok = if key_known {
            self.mac1.verify(covered, mac1)
        } else {
            constant_time_eq(mac1, &[0; MAC_LEN])
        };
        if !mac1_ok {
            return InitDecision::Drop;
        }
        self.secret.advance(now);
        let cookie_valid =
            cookie.is_some_and(|c| self.secret.check(from, sender, c) == CookieCheck::Valid);
        match self.limiter.admit(now, cookie_valid, !key_known) {
            Admission::Proceed => InitDecision::Proceed,
            Admission::SendCookie => InitDecision::SendCookie(self.secret.cookie(from, sender)),
        }
    }

    /// The mac1 an initiator computes for this responder (to test against).
    pub fn mac1_key(&self) -> &Mac1Key {
        &self.mac1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> SocketAddr {
        "198.51.100.4:5000".parse().unwrap()
    }

    #[test]
    fn mac1_verifies_only_for_its_key_and_bytes() {
        let key = Mac1Key::new(&[1; 32]);
        let covered = b"header and init fields";
        let mac = key.compute(covered);
        assert!(key.verify(covered, &mac));
        assert!(!Mac1Key::new(&[2; 32]).verify(covered, &mac));
        assert!(!key.verify(b"header and init fieldz", &mac));
        let mut wrong = mac;
        wrong[15] ^= 1;
        assert!(!key.verify(covered, &wrong));
    }

    #[test]
    fn cookie_is_valid_now_and_after_one_rotation_then_expired() {
        let start = Instant::now();
        let mut secret = RotatingSecret::new([7; 32], start, COOKIE_ROTATION);
        let peer = PeerId([3; 16]);
        let cookie = secret.cookie(address(), peer);
        assert_eq!(secret.check(address(), peer, &cookie), CookieCheck::Valid);
        secret.advance(start + COOKIE_ROTATION);
        assert_eq!(secret.check(address(), peer, &cookie), CookieCheck::Valid);
        secret.advance(start + COOKIE_ROTATION * 2);
        assert_eq!(secret.check(address(), peer, &cookie), CookieCheck::Expired);
        secret.advance(start + COOKIE_ROTATION * 3);
        assert_eq!(
            secret.check(address(), peer, &cookie),
            CookieCheck::Mismatch
        );
        assert_eq!(secret.next_rotation(), start + COOKIE_ROTATION * 4);
    }

    #[test]
    fn keys_move_exactly_at_the_bucket_edges_either_way() {
        // `advance` skips the division while `now` stays in the bucket: the epoch it lands
        // on is still ⌊elapsed / rotation⌋, forwards, backwards or before the start.
        let start = Instant::now() + Duration::from_secs(10);
        let rotation = Duration::from_millis(1000);
        let mut keys = RotatingKeys::new([7; 32], "weft test keys", start, rotation);
        let ns = Duration::from_nanos(1);
        for (at, epoch) in [
            (start + rotation - ns, 0),
            (start + rotation, 1),
            (start + rotation * 2 - ns, 1),
            (start + rotation / 2, 0),
            (start + rotation * 5, 5),
            (start - ns, 0),
            (start + rotation * 5 + ns, 5),
        ] {
            keys.advance(at);
            assert_eq!(
                keys.epoch,
                epoch,
                "{:?}",
                at.saturating_duration_since(start)
            );
            assert_eq!(keys.keys[0], keys.derive(epoch));
        }
    }

    #[test]
    fn cookie_is_bound_to_address_and_peer() {
        let secret = RotatingSecret::new([7; 32], Instant::now(), COOKIE_ROTATION);
        let peer = PeerId([3; 16]);
        let cookie = secret.cookie(address(), peer);
        let other: SocketAddr = "198.51.100.4:5001".parse().unwrap();
        assert_eq!(secret.check(other, peer, &cookie), CookieCheck::Mismatch);
        assert_eq!(
            secret.check(address(), PeerId([4; 16]), &cookie),
            CookieCheck::Mismatch
        );
        let other_node = RotatingSecret::new([8; 32], Instant::now(), COOKIE_ROTATION);
        assert_eq!(
            other_node.check(address(), peer, &cookie),
            CookieCheck::Mismatch
        );
    }

    #[test]
    fn echo_names_the_init_it_answers() {
        assert_eq!(init_echo(b"init a"), init_echo(b"init a"));
        assert_ne!(init_echo(b"init a"), init_echo(b"init b"));
    }

    #[test]
    fn limiter_asks_for_cookies_above_the_rate_and_resets_each_second() {
        let start = Instant::now();
        let mut limiter = HandshakeRateLimiter::new(LoadPolicy::Rate(3));
        for _ in 0..3 {
            assert_eq!(limiter.admit(start, false, false), Admission::Proceed);
        }
        assert_eq!(limiter.admit(start, false, false), Admission::SendCookie);
        assert!(limiter.is_under_load());
        // A valid cookie gets through even under load.
        assert_eq!(limiter.admit(start, true, false), Admission::Proceed);
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.admit(later, false, false), Admission::Proceed);
        // Kind 2 always gets a cookie first.
        assert_eq!(limiter.admit(later, false, true), Admission::SendCookie);
    }

    #[test]
    fn policy_always_requires_a_cookie() {
        let mut limiter = HandshakeRateLimiter::new(LoadPolicy::Always);
        assert_eq!(
            limiter.admit(Instant::now(), false, false),
            Admission::SendCookie
        );
        assert_eq!(
            limiter.admit(Instant::now(), true, false),
            Admission::Proceed
        );
    }

    #[test]
    fn a_flood_of_inits_without_cookies_costs_no_dh() {
        let start = Instant::now();
        let responder = [9u8; 32];
        let secret = RotatingSecret::new([1; 32], start, COOKIE_ROTATION);
        let mut gate = InitGate::new(&responder, secret, LoadPolicy::Rate(10));
        let initiator_key = Mac1Key::new(&responder);
        let covered = [0x42u8; 100];
        let good_mac = initiator_key.compute(&covered);
        let before = crate::session::dh::count_on_this_thread();
        let mut proceeded = 0;
        let mut cookies = 0;
        for i in 0..1000u32 {
            let from = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4000));
            let sender = PeerId([i as u8; 16]);
            // Wrong mac1: dropped whatever else it carries.
            assert_eq!(
                gate.check(start, from, sender, true, &covered, &[0; 16], None),
                InitDecision::Drop
            );
            match gate.check(start, from, sender, true, &covered, &good_mac, None) {
                InitDecision::Proceed => proceeded += 1,
                InitDecision::SendCookie(cookie) => {
                    cookies += 1;
                    // The cookie it hands out lets that initiator through on its retry.
                    assert_eq!(
                        gate.check(
                            start,
                            from,
                            sender,
                            true,
                            &covered,
                            &good_mac,
                            Some(&cookie)
                        ),
                        InitDecision::Proceed
                    );
                }
                InitDecision::Drop => panic!("a good mac1 is never dropped"),
            }
        }
        assert_eq!(crate::session::dh::count_on_this_thread(), before);
        assert!(proceeded <= 10, "{proceeded} INITs passed above the rate");
        assert!(cookies >= 990);
    }

    #[test]
    fn kind_two_needs_a_zero_mac1_and_always_a_cookie_first() {
        let start = Instant::now();
        let secret = RotatingSecret::new([1; 32], start, COOKIE_ROTATION);
        let mut gate = InitGate::new(&[9; 32], secret, LoadPolicy::Rate(1000));
        let from = address();
        let sender = PeerId([5; 16]);
        assert_eq!(
            gate.check(start, from, sender, false, b"x", &[1; 16], None),
            InitDecision::Drop
        );
        let InitDecision::SendCookie(cookie) =
            gate.check(start, from, sender, false, b"x", &[0; 16], None)
        else {
            panic!("kind 2 gets a cookie first");
        };
        assert_eq!(
            gate.check(start, from, sender, false, b"x", &[0; 16], Some(&cookie)),
            InitDecision::Proceed
        );
        // A cookie for another address does not help.
        let other: SocketAddr = "198.51.100.5:5000".parse().unwrap();
        assert!(matches!(
            gate.check(start, other, sender, false, b"x", &[0; 16], Some(&cookie)),
            InitDecision::SendCookie(_)
        ));
    }
}
