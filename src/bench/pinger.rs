//! A blocking one-shot client for `weft ping`: its own [`Endpoint`] with a throwaway identity on
//! an ephemeral UDP socket, driven by a small loop until the PONG it waits for arrives.

use crate::channel::{Endpoint, EndpointConfig, Event};
use crate::session::Identity;
use crate::wire::PeerId;
use rand::RngCore;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const BUFFER: usize = 65_535;

/// The shortest socket read timeout used; the OS refuses zero.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A PONG that answered one of our PINGs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The peer that answered.
    pub peer: PeerId,
    /// Where the answer came from.
    pub from: SocketAddr,
    /// Time from handing the PING to the endpoint to receiving its PONG.
    pub rtt: Duration,
    /// The session kind the PING travelled under: `ik`, `xx`, `ikpsk2`, or `none` for kind 0.
    pub session: &'static str,
}

/// The name `weft ping` prints for a handshake kind (PROTOCOL.md §5).
pub fn session_kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "ik",
        2 => "xx",
        3 => "ikpsk2",
        _ => "none",
    }
}

/// Pings one address.
pub struct Pinger {
    socket: UdpSocket,
    endpoint: Endpoint,
    target: SocketAddr,
    peer: Option<PeerId>,
    recv_buf: Box<[u8]>,
    send_buf: Box<[u8]>,
    /// The kind of the session established with the target, once there is one.
    session: Option<u8>,
}

impl Pinger {
    /// Binds an ephemeral socket of the target's address family and makes a fresh identity: a
    /// ping leaves no trace in any data directory.
    pub fn new(target: SocketAddr, peer: Option<PeerId>) -> io::Result<Pinger> {
        let local: SocketAddr = if target.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        // Connected, so the kernel reports an ICMP port unreachable as ECONNREFUSED on the next
        // receive (an unconnected socket never hears of it) and drops datagrams from elsewhere.
        socket.connect(target)?;
        let mut rng = rand::rngs::OsRng;
        let identity = Identity::generate(&mut rng);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let endpoint = Endpoint::new(EndpointConfig::default(), identity, seed, Instant::now());
        Ok(Pinger {
            socket,
            endpoint,
            target,
            peer,
            recv_buf: vec![0; BUFFER].into_boxed_slice(),
            send_buf: vec![0; BUFFER].into_boxed_slice(),
            session: None,
        })
    }

    /// The local socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Hands the target's signed peer record to the endpoint, so the session is IK (kind 1)
    /// rather than XX (PROTOCOL.md §5); the PINGs then name the record's peer id.
    pub fn use_record(&mut self, record: crate::session::PeerRecord) -> Result<(), String> {
        let peer = record.peer_id();
        self.endpoint
            .add_peer_record(record)
            .map_err(|error| error.to_string())?;
        self.peer = Some(peer);
        Ok(())
    }

    /// This pinger's throwaway peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.endpoint.local_peer_id()
    }

    /// Sends one PING with a fresh random token and waits up to `timeout` for its PONG; `None`
    /// when none came. PONGs to earlier PINGs that arrive meanwhile are ignored. An ICMP port
    /// unreachable from the target ends the wait at once with [`io::ErrorKind::ConnectionRefused`]:
    /// nothing listens there.
    pub fn ping(&mut self, timeout: Duration) -> io::Result<Option<Reply>> {
        let mut token = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let sent = Instant::now();
        self.endpoint
            .ping(sent, self.target, self.peer, token)
            .map_err(|error| io::Error::other(error.to_string()))?;
        self.drive_until(crate::channel::later(sent, timeout), Some((token, sent)))
    }

    /// Keeps the endpoint running (answering, retransmitting) until `until`.
    pub fn idle_until(&mut self, until: Instant) -> io::Result<()> {
        loop {
            match self.drive_until(until, None) {
                // The report of an earlier PING; the next PING hears its own.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                other => return other.map(|_| ()),
            }
        }
    }

    fn drive_until(
        &mut self,
        until: Instant,
        waiting_for: Option<([u8; 8], Instant)>,
    ) -> io::Result<Option<Reply>> {
        loop {
            let now = Instant::now();
            crate::engine::tell_wall_clock(&mut self.endpoint);
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            while let Some(transmit) = self.endpoint.poll_transmit(&mut self.send_buf) {
                let datagram = &self.send_buf[..transmit.len.min(self.send_buf.len())];
                self.socket.send_to(datagram, transmit.destination)?;
            }
            while let Some(event) = self.endpoint.poll_event() {
                if let Event::SessionEstablished { kind, .. } = event {
                    self.session = Some(kind);
                }
                let Event::Pong { peer, from, token } = event else {
                    continue;
                };
                if let Some((wanted, sent)) = waiting_for
                    && token == wanted
                {
                    return Ok(Some(Reply {
                        peer,
                        from,
                        rtt: now.saturating_duration_since(sent),
                        session: self.session.map_or("none", session_kind_name),
                    }));
                }
            }
            if now >= until {
                return Ok(None);
            }
            let mut wait = until.saturating_duration_since(now);
            if let Some(deadline) = self.endpoint.poll_timeout() {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            self.socket.set_read_timeout(Some(wait.max(MIN_WAIT)))?;
            match self.socket.recv_from(&mut self.recv_buf) {
                Ok((len, from)) => {
                    let received = Instant::now();
                    self.endpoint
                        .handle(received, from, &mut self.recv_buf[..len]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_no_reply() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut pinger = Pinger::new(silent.local_addr().unwrap(), None).unwrap();
        assert_eq!(pinger.ping(Duration::from_millis(50)).unwrap(), None);
    }

    #[test]
    fn a_closed_port_is_refused_rather_than_waited_out() {
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut pinger = Pinger::new(closed, None).unwrap();
        let error = pinger.ping(Duration::from_secs(20)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn socket_family_follows_the_target() {
        let v4 = Pinger::new("127.0.0.1:9".parse().unwrap(), None).unwrap();
        assert!(v4.local_addr().unwrap().is_ipv4());
        // IPv6 may be disabled in a test sandbox; only check when it can bind.
        if let Ok(v6) = Pinger::new("[::1]:9".parse().unwrap(), None) {
            assert!(v6.local_addr().unwrap().is_ipv6());
        }
    }
}
