//! The seam between a shard's loop and its I/O backend (PROTOCOL.md §12: two I/O backends, one
//! sans-IO core).
//!
//! A shard talks to its socket only through [`Io`]: wait for work, receive a batch, transmit
//! what the endpoint queued, close. [`Io::Epoll`] is mio plus `recvmmsg`/`sendmmsg`
//! (`epoll.rs`, `sys.rs`); [`Io::Uring`] is one io_uring per shard (`uring.rs`). Both wake on the
//! shard's `mio::Waker`, so hand-over and worker code does not know which backend runs.

use super::epoll::EpollIo;
use super::uring::UringIo;
use crate::channel::{Endpoint, Stats};
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

/// Why io_uring could not be set up: the kernel's errno and the step that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "io_uring is not available ({stage} failed with {name}: {description}); use --io epoll or \
     --io auto",
    name = errno_name(*errno),
    description = io::Error::from_raw_os_error(*errno)
)]
pub struct UringRefused {
    /// The step that failed (`io_uring_setup`, `register_buf_ring`, ...).
    pub stage: &'static str,
    /// The errno it returned.
    pub errno: i32,
}

impl UringRefused {
    /// The errno's symbolic name (`EPERM`), the `reason` label of `weft_io_fallback_total`.
    pub fn errno_name(&self) -> &'static str {
        errno_name(self.errno)
    }

    /// An `io::Error` of the errno's kind that carries this value, for [`super::Engine::start`].
    pub(super) fn into_io_error(self) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(self.errno).kind(), self)
    }
}

/// The symbolic name of the errnos io_uring setup is known to return.
fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::ENOMEM => "ENOMEM",
        libc::EINVAL => "EINVAL",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        _ => "EOTHER",
    }
}

/// Upper bounds of the batch-size buckets (`size` label of `weft_shard_*_batch_size_total`).
pub(super) const BATCH_BUCKETS: [(usize, &str); 7] = [
    (1, "1"),
    (4, "2-4"),
    (8, "5-8"),
    (16, "9-16"),
    (32, "17-32"),
    (64, "33-64"),
    (usize::MAX, "65+"),
];

/// The bucket a batch of `datagrams` (at least 1) falls in.
pub(super) fn batch_bucket(datagrams: usize) -> usize {
    BATCH_BUCKETS
        .iter()
        .position(|&(upper, _)| datagrams <= upper)
        .unwrap_or(BATCH_BUCKETS.len().saturating_sub(1))
}

/// Counts one receive batch of `datagrams` (PROTOCOL.md §12: counted locally, published about
/// once a second).
pub(super) fn record_recv_batch(stats: &mut Stats, datagrams: usize) {
    if datagrams == 0 {
        return;
    }
    stats.add("weft_shard_recv_batches_total", None, 1);
    let label = BATCH_BUCKETS[batch_bucket(datagrams)].1;
    stats.add("weft_shard_recv_batch_size_total", Some(("size", label)), 1);
}

/// Counts one turn's receive on either backend: its batch, the datagrams it held and the
/// kernel's running count of datagrams its receive queue dropped (SO_RXQ_OVFL).
pub(super) fn record_receive(stats: &mut Stats, datagrams: usize, rxq_overflows: u32) {
    record_recv_batch(stats, datagrams);
    stats.add(
        "weft_shard_datagrams_received_total",
        None,
        datagrams as u64,
    );
    stats.set("weft_shard_rxq_overflows", None, u64::from(rxq_overflows));
}

/// Counts `batches` send batches per bucket, as [`super::sys::Flushed::sizes`] holds them.
pub(super) fn record_send_batches(stats: &mut Stats, sizes: &[u32; BATCH_BUCKETS.len()]) {
    for (bucket, &count) in sizes.iter().enumerate() {
        if count > 0 {
            stats.add("weft_shard_send_batches_total", None, u64::from(count));
            let label = BATCH_BUCKETS[bucket].1;
            stats.add(
                "weft_shard_send_batch_size_total",
                Some(("size", label)),
                u64::from(count),
            );
        }
    }
}

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
        deliver: impl FnMut(&mut Stats, SocketAddr, &mut [u8]),
    ) -> usize {
        match self {
            Io::Epoll(io) => io.receive(stats, deliver),
            Io::Uring(io) => io.receive(stats, deliver),
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
    fn batches_land_in_their_buckets() {
        let expect = [
            (1, "1"),
            (2, "2-4"),
            (4, "2-4"),
            (5, "5-8"),
            (8, "5-8"),
            (9, "9-16"),
            (17, "17-32"),
            (32, "17-32"),
            (33, "33-64"),
            (64, "33-64"),
            (65, "65+"),
            (1000, "65+"),
        ];
        for (n, label) in expect {
            assert_eq!(BATCH_BUCKETS[batch_bucket(n)].1, label, "{n}");
        }
        let mut stats = Stats::new();
        record_recv_batch(&mut stats, 5);
        record_recv_batch(&mut stats, 0);
        record_recv_batch(&mut stats, 7);
        assert_eq!(stats.get("weft_shard_recv_batches_total", None), 2);
        assert_eq!(
            stats.get("weft_shard_recv_batch_size_total", Some(("size", "5-8"))),
            2
        );
        assert_eq!(
            stats.get("weft_shard_recv_batch_size_total", Some(("size", "1"))),
            0
        );
    }

    #[test]
    fn choices_parse_and_refusals_name_the_errno() {
        assert_eq!("auto".parse(), Ok(IoChoice::Auto));
        assert_eq!("uring".parse(), Ok(IoChoice::Uring));
        assert_eq!("epoll".parse(), Ok(IoChoice::Epoll));
        assert!("kqueue".parse::<IoChoice>().unwrap_err().contains("kqueue"));
        let refused = UringRefused {
            stage: "io_uring_setup",
            errno: libc::EPERM,
        };
        let text = refused.to_string();
        assert!(
            text.contains("EPERM") && text.contains("--io epoll"),
            "{text}"
        );
        let error = refused.into_io_error();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("io_uring_setup"));
    }
}
