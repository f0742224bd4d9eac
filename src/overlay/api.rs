//! The application's side of the DHT on a running node: [`DhtHandle`] sends [`DhtCommand`]s to
//! the overlay service on the node's worker (`service::host`) and waits for the answer each
//! carries a channel for. The DHT's state stays on the worker's thread; nothing is shared.
//!
//! ```no_run
//! # use std::time::Duration;
//! # fn demo(node: &weft::node::Node) -> Result<(), weft::overlay::api::DhtError> {
//! let dht = node.dht().expect("the node runs the overlay");
//! dht.put(b"greeting", b"hello", Duration::from_secs(10))?;
//! let found = dht.get(b"greeting", Duration::from_secs(10))?;
//! assert_eq!(found.value.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

use super::id::NodeId;
use super::rpc::Handler;
use crate::service::host::{HostHandle, ServiceTag};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::time::{Duration, Instant};

/// A command for the overlay service; each that answers carries the channel its answer goes to.
pub enum DhtCommand {
    /// Store `value` under `key` at the k closest nodes.
    Put {
        /// The key (at most 256 bytes).
        key: Vec<u8>,
        /// The value, stored as a msgpack bin.
        value: Vec<u8>,
        /// Where the outcome goes.
        reply: Sender<PutOutcome>,
    },
    /// Look `key` up.
    Get {
        /// The key.
        key: Vec<u8>,
        /// Where the outcome goes.
        reply: Sender<GetOutcome>,
    },
    /// Register a CUSTOM handler (seed 003 §6.13) under `name`.
    Register {
        /// The handler's name, as requests name it.
        name: String,
        /// The handler.
        handler: Handler,
    },
    /// Report the table, the records and the channels.
    Status {
        /// Where the report goes.
        reply: Sender<DhtStatus>,
    },
}

/// How a put went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// How many of the k closest nodes acknowledged the STORE.
    pub stored: usize,
    /// The depth of the lookup that found them.
    pub depth: u32,
    /// From the command to the last answer.
    pub elapsed: Duration,
}

/// How a get went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetOutcome {
    /// The value, when a node held it (a msgpack bin or str, as bytes).
    pub value: Option<Vec<u8>>,
    /// The lookup's depth: its longest chain of dependent requests.
    pub depth: u32,
    /// From the command to the answer.
    pub elapsed: Duration,
}

/// What the overlay service knows of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtStatus {
    /// The node's id.
    pub node_id: NodeId,
    /// True while the id is provisional (derived from the node's key, not yet certified by the
    /// network's consensus service).
    pub provisional: bool,
    /// Client mode: queries, holds no records, stays out of other nodes' tables.
    pub client: bool,
    /// Bucket size (k).
    pub k: usize,
    /// Contacts per non-empty bucket: `(bucket index, contacts)`, index 0 the farthest half.
    pub buckets: Vec<(usize, usize)>,
    /// Contacts in the routing table.
    pub contacts: usize,
    /// Records held for others.
    pub records: usize,
    /// Overlay channels open now.
    pub channels: usize,
}

/// Why a command got no answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhtError {
    /// The node has stopped, or runs no overlay.
    #[error("the node's overlay service has stopped")]
    Stopped,
    /// No answer within the time given.
    #[error("no answer in time")]
    TimedOut,
}

/// Sends commands to the overlay service of a running node.
#[derive(Clone)]
pub struct DhtHandle {
    host: HostHandle,
}

impl DhtHandle {
    /// A handle on the overlay service of the host `host` sends to.
    pub fn new(host: HostHandle) -> DhtHandle {
        DhtHandle { host }
    }

    fn ask<T>(
        &self,
        timeout: Duration,
        command: impl FnOnce(Sender<T>) -> DhtCommand,
    ) -> Result<T, DhtError> {
        let (tx, rx): (Sender<T>, Receiver<T>) = bounded(1);
        if !self.host.send(ServiceTag::OVERLAY, Box::new(command(tx))) {
            return Err(DhtError::Stopped);
        }
        rx.recv_timeout(timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => DhtError::TimedOut,
            crossbeam_channel::RecvTimeoutError::Disconnected => DhtError::Stopped,
        })
    }

    /// Stores `value` under `key` at the k closest nodes (and again every republish interval
    /// while the node runs).
    pub fn put(&self, key: &[u8], value: &[u8], timeout: Duration) -> Result<PutOutcome, DhtError> {
        self.ask(timeout, |reply| DhtCommand::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            reply,
        })
    }

    /// Looks `key` up.
    pub fn get(&self, key: &[u8], timeout: Duration) -> Result<GetOutcome, DhtError> {
        self.ask(timeout, |reply| DhtCommand::Get {
            key: key.to_vec(),
            reply,
        })
    }

    /// Registers a CUSTOM handler under `name`; peers' CUSTOM requests naming it reach it.
    pub fn register(&self, name: &str, handler: Handler) -> Result<(), DhtError> {
        let command = DhtCommand::Register {
            name: name.to_owned(),
            handler,
        };
        match self.host.send(ServiceTag::OVERLAY, Box::new(command)) {
            true => Ok(()),
            false => Err(DhtError::Stopped),
        }
    }

    /// The service's report on itself.
    pub fn status(&self, timeout: Duration) -> Result<DhtStatus, DhtError> {
        self.ask(timeout, |reply| DhtCommand::Status { reply })
    }

    /// Waits until the routing table holds at least `contacts` contacts (the join filled it);
    /// returns the last report.
    pub fn wait_for_contacts(
        &self,
        contacts: usize,
        timeout: Duration,
    ) -> Result<DhtStatus, DhtError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            let status = self.status(left.max(Duration::from_millis(1)))?;
            if status.contacts >= contacts {
                return Ok(status);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(DhtError::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
