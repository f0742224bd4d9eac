//! The metrics endpoint's HTTP side: `GET /metrics` on a std `TcpListener`, each connection on
//! its own short-lived thread under one deadline for the whole request, at most
//! [`ScrapeLimits::max_connections`] at once.
//!
//! A client that trickles its request a byte at a time, or connects and says nothing, holds only
//! its own thread, and only until its deadline; it never delays another scrape. When every slot
//! is taken, the connection that has waited longest for its request head is closed to make room
//! (an honest scraper sends its request as soon as it connects, so the oldest silent connection
//! is the likeliest attacker); only when every slot is busy answering is a newcomer refused.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest request head read; a scrape request is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 2048;

/// Stack of a connection thread: it reads into a 2 KiB buffer and writes a rendered string.
const CONNECTION_STACK: usize = 128 * 1024;

/// What answers a request: the status line's text, the content type and the body.
pub(crate) type Answer = (&'static str, &'static str, String);

/// Bounds on what scrapers may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeLimits {
    /// Connections served at once. 32: Prometheus scrapes a target over one connection at a
    /// time, so several scrapers and an operator's curl fit with room to spare, while each slot
    /// costs a thread (a 128 KiB stack) and a socket.
    pub max_connections: usize,
    /// Time from accepting a connection to the last byte of its answer. 5 s: a scrape on
    /// loopback or a LAN takes milliseconds and Prometheus's own default timeout is 10 s, so
    /// only a stalled or hostile client meets it, and its slot is back within 5 s.
    pub request_deadline: Duration,
}

impl Default for ScrapeLimits {
    fn default() -> ScrapeLimits {
        ScrapeLimits {
            max_connections: 32,
            request_deadline: Duration::from_secs(5),
        }
    }
}

/// Connections the endpoint closed without answering, by reason; exported as
/// `weft_metrics_connections_dropped_total{reason=...}`.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    /// Refused on arrival: every slot was busy answering (`over_cap`).
    pub over_cap: AtomicU64,
    /// Closed to make room while still waiting for their request head (`evicted`).
    pub evicted: AtomicU64,
    /// Closed at the whole-request deadline (`deadline`).
    pub deadline: AtomicU64,
}

impl ScrapeStats {
    /// `(reason, count)` for every reason, in a fixed order.
    pub fn by_reason(&self) -> [(&'static str, u64); 3] {
        [
            ("over_cap", self.over_cap.load(Ordering::Relaxed)),
            ("evicted", self.evicted.load(Ordering::Relaxed)),
            ("deadline", self.deadline.load(Ordering::Relaxed)),
        ]
    }
}

/// A connection being served: enough to close it from the accepting thread.
struct Slot {
    id: u64,
    accepted: Instant,
    stream: TcpStream,
    /// Still waiting for its request head, so it may be evicted.
    reading: Arc<AtomicBool>,
}

struct Shared {
    limits: ScrapeLimits,
    slots: Mutex<Vec<Slot>>,
    stats: Arc<ScrapeStats>,
}

impl Shared {
    /// Takes a slot for a new connection, evicting the oldest silent one when all are taken;
    /// `None` when every slot is busy answering.
    fn admit(&self, id: u64, stream: &TcpStream) -> Option<Arc<AtomicBool>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= self.limits.max_connections.max(1) {
            let oldest = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.reading.load(Ordering::Acquire))
                .min_by_key(|(_, s)| s.accepted)
                .map(|(i, _)| i);
            let victim = slots.swap_remove(oldest?);
            // Its thread's blocked read returns at once and the thread ends.
            let _ = victim.stream.shutdown(Shutdown::Both);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let reading = Arc::new(AtomicBool::new(true));
        let stream = stream.try_clone().ok()?;
        slots.push(Slot {
            id,
            accepted: Instant::now(),
            stream,
            reading: Arc::clone(&reading),
        });
        Some(reading)
    }

    fn release(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|s| s.id != id);
    }
}

/// Serves `listener` from a thread that lives as long as the process; `answer` turns a request
/// head into its answer, and `stats` counts the connections closed unanswered.
pub(crate) fn spawn<F>(
    listener: TcpListener,
    limits: ScrapeLimits,
    stats: Arc<ScrapeStats>,
    answer: F,
) -> io::Result<()>
where
    F: Fn(&[u8]) -> Answer + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        limits,
        slots: Mutex::new(Vec::new()),
        stats,
    });
    let answer = Arc::new(answer);
    std::thread::Builder::new()
        .name("weft-metrics".into())
        .spawn(move || accept_loop(&listener, &shared, &answer))?;
    Ok(())
}

fn accept_loop<F>(listener: &TcpListener, shared: &Arc<Shared>, answer: &Arc<F>)
where
    F: Fn(&[u8]) -> Answer + Send + Sync + 'static,
{
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint cannot accept");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let accepted = Instant::now();
        next_id = next_id.wrapping_add(1);
        let id = next_id;
        let Some(reading) = shared.admit(id, &stream) else {
            shared.stats.over_cap.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            continue;
        };
        let (conn_shared, conn_answer) = (Arc::clone(shared), Arc::clone(answer));
        let spawned = std::thread::Builder::new()
            .name("weft-metrics-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let deadline = accepted + conn_shared.limits.request_deadline;
                match serve(stream, deadline, &reading, &*conn_answer) {
                    Ok(()) => {}
                    Err(e) if is_timeout(&e) => {
                        conn_shared.stats.deadline.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("metrics request passed its deadline");
                    }
                    Err(e) => tracing::debug!(error = %e, "metrics request failed"),
                }
                conn_shared.release(id);
            });
        if spawned.is_err() {
            // No thread for it: the connection was moved into the failed closure and is closed.
            shared.release(id);
            shared.stats.over_cap.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Answers 503 if the socket takes it at once, then closes.
fn refuse(stream: TcpStream) {
    if stream.set_nonblocking(true).is_ok() {
        let mut stream = stream;
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Time left before `deadline`, or a timeout error once it has passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Reads one request head and writes its answer, all before `deadline`.
fn serve(
    mut stream: TcpStream,
    deadline: Instant,
    reading: &AtomicBool,
    answer: &dyn Fn(&[u8]) -> Answer,
) -> io::Result<()> {
    let mut head = [0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    while len < head.len() && !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        // Each read waits only for what is left of the whole request's time, so trickling a
        // byte at a time gains a client nothing.
        stream.set_read_timeout(Some(left(deadline)?))?;
        match stream.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    reading.store(false, Ordering::Release);
    let (status, content_type, body) = answer(&head[..len]);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut bytes = response.as_bytes();
    while !bytes.is_empty() {
        // As for reads: a client that drains the answer slowly still ends at the deadline.
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn start(limits: ScrapeLimits) -> (SocketAddr, Arc<ScrapeStats>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stats = Arc::new(ScrapeStats::default());
        let answer = |_: &[u8]| ("200 OK", "text/plain", "up 1\n".to_string());
        spawn(listener, limits, Arc::clone(&stats), answer).unwrap();
        (address, stats)
    }

    fn get(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    /// Waits (bounded) until the server has closed `stream`: a read returns 0 or an error.
    fn closed_by_server(stream: &mut TcpStream) -> bool {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }

    #[test]
    fn silent_connections_beyond_the_cap_make_room_for_a_scrape() {
        let limits = ScrapeLimits {
            max_connections: 4,
            request_deadline: Duration::from_secs(60),
        };
        let (address, stats) = start(limits);
        let mut silent: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        // Every slot is held by a silent client, far from its deadline; a scrape still works.
        let response = get(address);
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("up 1\n"), "{response}");
        assert!(stats.evicted.load(Ordering::Relaxed) >= 1);
        // The oldest silent client was the one closed.
        assert!(closed_by_server(&mut silent[0]));
        assert_eq!(stats.over_cap.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_trickling_client_is_closed_at_the_deadline() {
        let limits = ScrapeLimits {
            max_connections: 4,
            request_deadline: Duration::from_millis(300),
        };
        let (address, stats) = start(limits);
        let mut slow = TcpStream::connect(address).unwrap();
        slow.write_all(b"GET /met").unwrap();
        assert!(closed_by_server(&mut slow));
        let start = Instant::now();
        while stats.deadline.load(Ordering::Relaxed) == 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "never counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(get(address).starts_with("HTTP/1.1 200 OK"));
    }
}
