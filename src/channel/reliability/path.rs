//! The state one peer path shares among its channels (PROTOCOL.md §7.3, §7.6): RTT, congestion
//! controller, pacer and path MTU; its arithmetic is the reliability layer's (checked or
//! saturating).
#![deny(clippy::arithmetic_side_effects)]

use super::{
    CongestionController, NewReno, Pacer, PmtuProber, ReliabilityConfig, RttEstimator, pmtu,
};
use std::time::Instant;

/// What one peer path shares among its channels: RTT, congestion controller, pacer, path MTU
/// and the round-robin cursor the endpoint uses to take turns between channels (§7.3).
#[derive(Debug)]
pub struct PathState {
    pub(crate) rtt: RttEstimator,
    pub(super) controller: Box<dyn CongestionController>,
    pub(super) pacer: Pacer,
    pub(super) pmtu: PmtuProber,
    pub(super) bytes_in_flight: u64,
    pub(super) overhead: usize,
    cursor: usize,
    congestion_events: u64,
}

impl PathState {
    /// A fresh path with NewReno.
    pub fn new(config: &ReliabilityConfig, now: Instant) -> Self {
        Self::with_controller(config, now, Box::new(NewReno::new(pmtu::BASE_MTU)))
    }

    /// A fresh path with the given congestion controller.
    pub fn with_controller(
        config: &ReliabilityConfig,
        now: Instant,
        controller: Box<dyn CongestionController>,
    ) -> Self {
        PathState {
            rtt: RttEstimator::new(config.initial_rtt),
            controller,
            pacer: Pacer::new(now, pmtu::BASE_MTU),
            pmtu: PmtuProber::new(config.max_mtu),
            bytes_in_flight: 0,
            // PROTOCOL.md §3: a sequenced header (41) and an AEAD tag (16).
            overhead: 41 + 16,
            cursor: 0,
            congestion_events: 0,
        }
    }

    /// Sets the bytes each packet spends outside its payload (header, tag).
    pub fn set_packet_overhead(&mut self, overhead: usize) {
        self.overhead = overhead;
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The congestion window in bytes.
    pub fn congestion_window(&self) -> u64 {
        self.controller.window()
    }

    /// Bytes sent and neither acknowledged nor lost.
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// Congestion events (loss episodes) so far.
    pub fn congestion_events(&self) -> u64 {
        self.congestion_events
    }

    /// The path's current MTU (UDP payload bytes).
    pub fn current_mtu(&self) -> u16 {
        self.pmtu.current_mtu()
    }

    /// The payload room of an ordinary packet.
    pub fn max_payload(&self) -> usize {
        usize::from(self.current_mtu()).saturating_sub(self.overhead)
    }

    /// Index of the channel (of `channels`) whose turn it is, advancing the cursor.
    pub fn next_turn(&mut self, channels: usize) -> usize {
        if channels == 0 {
            return 0;
        }
        // Kept below the count: a turn (one per packet) divides only if the count shrank.
        let turn = if self.cursor < channels {
            self.cursor
        } else {
            self.cursor.checked_rem(channels).unwrap_or(0)
        };
        let next = turn.saturating_add(1);
        self.cursor = if next < channels { next } else { 0 };
        turn
    }

    /// Whether a packet of `bytes` fits the window and the pacer; else when pacing allows it
    /// (`None`: wait for acknowledgements).
    pub(super) fn send_allowed(&self, now: Instant, bytes: u64) -> Result<(), Option<Instant>> {
        if self.bytes_in_flight.saturating_add(bytes) > self.controller.window() {
            return Err(None);
        }
        match self.pacer.delay(
            now,
            bytes,
            self.controller.window(),
            self.rtt.smoothed(),
            self.current_mtu(),
        ) {
            None => Ok(()),
            Some(at) => Err(Some(at)),
        }
    }

    pub(super) fn on_packet_sent(&mut self, now: Instant, size: u64, probe: Option<u16>) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_add(size);
        self.controller.on_sent(now, size);
        let (window, srtt, mtu) = (
            self.controller.window(),
            self.rtt.smoothed(),
            self.current_mtu(),
        );
        self.pacer.on_sent(now, size, window, srtt, mtu);
        if let Some(size) = probe {
            self.pmtu.on_probe_sent(size);
        }
    }

    pub(crate) fn on_packet_acked(
        &mut self,
        now: Instant,
        sent: Instant,
        size: u64,
        probe: Option<u16>,
    ) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(size);
        self.controller.on_ack(now, sent, size, &self.rtt);
        match probe {
            Some(probe) => {
                self.pmtu.on_probe_acked(probe);
                self.controller.on_mtu_update(self.pmtu.current_mtu());
            }
            None => self
                .pmtu
                .on_packet_acked(size.min(u64::from(u16::MAX)) as u16),
        }
    }

    pub(crate) fn on_packet_lost(&mut self, now: Instant, size: u64, probe: Option<u16>) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(size);
        match probe {
            // RFC 8899 §4.2: a lost probe says nothing about congestion.
            Some(probe) => self.pmtu.on_probe_lost(now, probe),
            None => {
                if self
                    .pmtu
                    .on_packet_lost(now, size.min(u64::from(u16::MAX)) as u16)
                {
                    self.controller.on_mtu_update(self.pmtu.current_mtu());
                }
            }
        }
    }

    pub(crate) fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost: u64,
    ) {
        self.congestion_events = self.congestion_events.saturating_add(1);
        self.controller
            .on_congestion_event(now, sent, persistent, lost);
    }

    pub(crate) fn forget_in_flight(&mut self, size: u64, probe: Option<u16>) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(size);
        if probe.is_some() {
            self.pmtu.on_probe_abandoned();
        }
    }
}
