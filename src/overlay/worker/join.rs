//! Joining (`weft node --bootstrap`): channels to the bootstrap addresses, whose peers become
//! the first contacts; the DHT's self-lookup then fills the buckets. When no bootstrap node
//! answers, the service tries again, waiting twice as long each time, up to a minute.

use super::{BOOTSTRAP_RETRY_MAX, Bootstrap, OverlayService, Token};
use crate::overlay::id::Contact;
use crate::service::host::Context;
use crate::wire::Capabilities;
use std::time::Instant;

impl OverlayService {
    pub(super) fn start_bootstrap(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.bootstrap.next_try = None;
        for Bootstrap { addr, peer } in self.config.bootstrap.clone() {
            match cx.open(addr, peer, Capabilities::RESEND) {
                Ok(token) => {
                    self.tokens.insert(token, Token::Bootstrap(addr));
                    self.bootstrap.waiting = self.bootstrap.waiting.saturating_add(1);
                }
                Err(_) => Self::count(cx, "open_refused"),
            }
        }
        if self.bootstrap.waiting == 0 {
            self.finish_bootstrap(now);
        }
    }

    fn finish_bootstrap(&mut self, now: Instant) {
        let contacts = std::mem::take(&mut self.bootstrap.contacts);
        if contacts.is_empty() {
            tracing::warn!(
                retry_in = ?self.bootstrap.backoff,
                "overlay: no bootstrap node answered; trying again"
            );
            self.bootstrap.next_try = now.checked_add(self.bootstrap.backoff);
            self.bootstrap.backoff = self
                .bootstrap
                .backoff
                .saturating_mul(2)
                .min(BOOTSTRAP_RETRY_MAX);
            return;
        }
        tracing::info!(contacts = contacts.len(), "overlay: joining");
        self.dht.bootstrap(now, &contacts);
    }

    pub(super) fn bootstrap_answered(&mut self, now: Instant, contact: Option<Contact>) {
        if let Some(contact) = contact {
            self.bootstrap.contacts.push(contact);
        }
        self.bootstrap.waiting = self.bootstrap.waiting.saturating_sub(1);
        if self.bootstrap.waiting == 0 {
            self.finish_bootstrap(now);
        }
    }
}
