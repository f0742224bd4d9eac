//! The raw-UDP baseline: an echo with the engine's sockets, batches and buffers, and the flows
//! that load it (a stamp and a flow number in each datagram, nothing else).

use super::{Flows, LoadConfig, Out};
use crate::engine::sys::{self, RecvBatch, SendBatch};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes a baseline datagram needs: the stamp and the flow number.
const MIN_DATAGRAM: usize = 12;

/// A raw-UDP echo: `shards` threads, each a SO_REUSEPORT socket on one port that sends back
/// every datagram with `recvmmsg`/`sendmmsg`, the same batches and buffers the engine uses.
pub struct RawEcho {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RawEcho {
    /// Binds and starts the echo threads.
    pub fn start(listen: SocketAddr, shards: usize) -> io::Result<RawEcho> {
        let first = sys::bind_reuseport(listen)?;
        let local_addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..shards.max(1) {
            sockets.push(sys::bind_reuseport(local_addr)?);
        }
        let gso = sys::gso_supported(&sockets[0]);
        // Built first, so that a thread that cannot start stops those already running (Drop).
        let mut echo = RawEcho {
            local_addr,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(sockets.len()),
        };
        for socket in sockets {
            let stop = Arc::clone(&echo.stop);
            // Named so the bench reads the echo's own CPU apart from its clients'.
            let thread = std::thread::Builder::new()
                .name(super::RAW_ECHO_THREADS[0].into())
                .spawn(move || raw_echo(&socket, gso, &stop))?;
            echo.threads.push(thread);
        }
        Ok(echo)
    }

    /// The echo's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn raw_echo(socket: &UdpSocket, gso: bool, stop: &AtomicBool) {
    let fd = socket.as_raw_fd();
    let mut recv = RecvBatch::new();
    let mut send = SendBatch::new(gso);
    let mut last_work = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let n = match recv.recv(fd) {
            Ok(n) => n,
            Err(_) => {
                // A shard's rule: busy-poll briefly after work, then sleep (no poll to wake it).
                if last_work.elapsed() > Duration::from_micros(50) {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
        };
        last_work = Instant::now();
        for i in 0..n {
            let (received, bytes) = recv.message(i);
            let Some(from) = received.from else { continue };
            let Some(slot) = send.slot() else { break };
            let len = bytes.len().min(slot.len());
            slot[..len].copy_from_slice(&bytes[..len]);
            send.push(from, len);
        }
        while !send.is_empty() {
            if send.flush(fd).blocked {
                std::thread::yield_now();
            }
        }
    }
}

/// Baseline flows: a datagram is the stamp, the flow number and padding to the size.
pub(super) struct RawFlows {
    count: usize,
    target: SocketAddr,
    size: usize,
}

impl RawFlows {
    pub(super) fn new(config: &LoadConfig, count: usize) -> RawFlows {
        RawFlows {
            count,
            target: config.target,
            size: config.size.max(MIN_DATAGRAM),
        }
    }
}

impl Flows for RawFlows {
    fn count(&self) -> usize {
        self.count
    }

    fn ready(&self, _flow: usize) -> bool {
        true
    }

    fn send(&mut self, flow: usize, _now: Instant, stamp: u64, out: &mut Out) -> bool {
        let slot = out.slot();
        slot[..8].copy_from_slice(&stamp.to_be_bytes());
        slot[8..12].copy_from_slice(&(flow as u32).to_be_bytes());
        out.push(self.target, self.size);
        true
    }

    fn receive(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        datagram: &mut [u8],
        _out: &mut Out,
        answers: &mut Vec<(usize, u64)>,
    ) {
        let (Some(stamp), Some(flow)) = (datagram.get(..8), datagram.get(8..12)) else {
            return;
        };
        let mut s = [0u8; 8];
        s.copy_from_slice(stamp);
        let mut f = [0u8; 4];
        f.copy_from_slice(flow);
        let flow = u32::from_be_bytes(f) as usize;
        if flow < self.count {
            answers.push((flow, u64::from_be_bytes(s)));
        }
    }
}
