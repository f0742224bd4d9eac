//! The seam between a shard's loop and its I/O backend (PROTOCOL.md §12: two I/O backends, one
//! sans-IO core).
//!
//! A shard talks to its socket only through [`Io`]: wait for work, receive a batch, transmit
//! what the endpoint queued, close. [`Io::Epoll`] is mio plus `recvmmsg`/`sendmmsg`
//! (`epoll.rs`, `sys.rs`); [`Io::Uring`] is one io_uring per shard (`uring/`). Both wake on the
//! shard's `mio::Waker`, so hand-over and worker code does not know which backend runs.

use super::backend::Incoming;
use super::epoll::EpollIo;
use super::uring::UringIo;
pub use super::uring::UringRefused;
use crate::channel::Endpoint;
use crate::stats::Stats;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Which I/O backend an engine asks for (`weft node --io`, config key `io`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum IoChoice {
    /// The faster backend by this project's measurement (docs/ENGINE.md), falling back to epoll
    /// where io_uring is refused.
    #[default]
    Auto,
    /// io_uring, or an error when the kernel refuses it.
    Uring,
    /// epoll with batched `recvmmsg`/`sendmmsg`.
    Epoll,
}

impl IoChoice {
    /// The name used on the command line and in the config file.
    pub fn name(self) -> &'static str {
        match self {
            IoChoice::Auto => "auto",
            IoChoice::Uring => "uring",
            IoChoice::Epoll => "epoll",
        }
    }

    /// Whether an engine with this choice sets up io_uring first: `Uring` always, `Epoll`
    /// never, `Auto` when this project's measurement found io_uring faster (docs/ENGINE.md).
    pub fn tries_uring(self) -> bool {
        match self {
            IoChoice::Uring => true,
            IoChoice::Epoll => false,
            IoChoice::Auto => AUTO_PREFERS_URING,
        }
    }
}

impl FromStr for IoChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<IoChoice, String> {
        match text {
            "auto" => Ok(IoChoice::Auto),
            "uring" | "io_uring" => Ok(IoChoice::Uring),
            "epoll" => Ok(IoChoice::Epoll),
            other => Err(format!(
                "unknown I/O backend {other:?}; expected \"auto\", \"uring\" or \"epoll\""
            )),
        }
    }
}

/// Whether [`IoChoice::Auto`] tries io_uring before epoll. Measured with `weft bench` on
/// loopback (docs/ENGINE.md, "Choosing a backend").
const AUTO_PREFERS_URING: bool = false;

/// A shard's I/O backend.
pub(super) enum Io {
    /// mio + `recvmmsg`/`sendmmsg`.
    Epoll(Box<EpollIo>),
    /// One io_uring per shard.
    Uring(Box<UringIo>),
}

impl Io {
    /// The backend's name, as `weft_engine_info{io_backend}` shows it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Io::Epoll(_) => "epoll",
            Io::Uring(_) => "uring",
        }
    }

    /// True when work is known to wait (a full batch was read, completions are queued), so the
    /// loop must not sleep.
    pub(super) fn busy(&mut self) -> bool {
        match self {
            Io::Epoll(io) => io.busy(),
            Io::Uring(io) => io.busy(),
        }
    }

    /// Submits what is queued and sleeps until the socket, a wake-up or `timeout`.
    pub(super) fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        match self {
            Io::Epoll(io) => io.wait(timeout),
            Io::Uring(io) => io.wait(timeout),
        }
    }

    /// Hands every datagram received since the last call to `deliver`, GRO trains split;
    /// returns how many.
    pub(super) fn receive(
        &mut self,
        stats: &mut Stats,
        deliver: impl FnMut(&mut Stats, SocketAddr, Incoming<'_>),
    ) -> usize {
        match self {
            Io::Epoll(io) => io.receive(stats, deliver),
            Io::Uring(io) => io.receive(stats, deliver),
        }
    }

    /// The kernel's running count of datagrams it dropped on the socket (SO_RXQ_OVFL), as the
    /// last receive saw it; 0 until the first drop.
    pub(super) fn rxq_overflows(&self) -> u32 {
        match self {
            Io::Epoll(io) => io.rxq_overflows(),
            Io::Uring(io) => io.rxq_overflows(),
        }
    }

    /// Takes what the endpoint queued and sends (epoll) or submits (io_uring) it; returns the
    /// datagrams taken.
    pub(super) fn transmit(&mut self, endpoint: &mut Endpoint, stats: &mut Stats) -> usize {
        match self {
            Io::Epoll(io) => io.transmit(endpoint, stats),
            Io::Uring(io) => io.transmit(endpoint, stats),
        }
    }

    /// The last transmit of a stopping shard: sends what is queued and, for io_uring, waits
    /// (bounded) until the kernel has finished with every buffer.
    pub(super) fn close(&mut self, endpoint: &mut Endpoint, stats: &mut Stats) {
        match self {
            Io::Epoll(io) => {
                io.transmit(endpoint, stats);
            }
            Io::Uring(io) => io.close(endpoint, stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse(), Ok(IoChoice::Auto));
        assert_eq!("uring".parse(), Ok(IoChoice::Uring));
        assert_eq!("epoll".parse(), Ok(IoChoice::Epoll));
        assert!("kqueue".parse::<IoChoice>().unwrap_err().contains("kqueue"));
    }
}
