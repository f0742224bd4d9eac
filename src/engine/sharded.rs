//! The thread-per-core engine (PROTOCOL.md §12): N shards on one UDP port, steered by a
//! reuseport BPF program, supervised by the thread that calls [`Engine::run`].

use super::bare::BareRoutes;
use super::epoll::EpollIo;
use super::io::{Io, IoChoice, UringRefused};
use super::shard::{Handover, Shard, ShardParts, ShardStats};
use super::sys;
use super::uring::{UringIo, UringSetup};
use crate::channel::{Endpoint, EndpointConfig};
use crate::service::{Request, WorkerLink, worker_queues};
use crate::session::Identity;
use crate::stats::{StatKind, Stats};
use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Waker};
use signal_hook::SigId;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Hand-over batches that may wait between two shards; beyond this a shard drops and counts.
const HANDOVER_QUEUE: usize = 64;

/// Opens by bare address another shard resolved that may wait for their owner shard; beyond
/// this the open is refused and counted (`bare.rs`).
const OPEN_QUEUE: usize = 64;

/// How an engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The shared UDP address; port 0 picks one for all shards.
    pub listen: SocketAddr,
    /// Shards; 0 means one per core.
    pub shards: usize,
    /// Pin each shard's thread to a core.
    pub pin: bool,
    /// Attach the steering program; off only to exercise the hand-over path.
    pub steer: bool,
    /// Settings of every shard's endpoint.
    pub endpoint: EndpointConfig,
    /// The I/O backend asked for (PROTOCOL.md §12); [`Engine::io_backend`] says which runs.
    pub io: IoChoice,
    /// Fault injection for tests: io_uring setup fails with this errno, as it does under a
    /// seccomp filter (EPERM), `kernel.io_uring_disabled` (EPERM), a low memlock limit
    /// (ENOMEM) or an old kernel (ENOSYS). `None` outside tests.
    #[doc(hidden)]
    pub io_fault: Option<i32>,
}

impl EngineConfig {
    /// One shard per core on `listen`, pinned and steered.
    pub fn new(listen: SocketAddr, endpoint: EndpointConfig) -> EngineConfig {
        EngineConfig {
            listen,
            shards: 0,
            pin: true,
            steer: true,
            endpoint,
            io: IoChoice::Auto,
            io_fault: None,
        }
    }
}

/// The number of cores this process may use, the default shard count.
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Stops a running [`Engine`] from another thread or a signal handler.
#[derive(Debug)]
pub struct ShutdownHandle {
    pipe: UnixStream,
}

impl ShutdownHandle {
    /// Asks the engine to stop; [`Engine::run`] returns once every shard has.
    pub fn shutdown(&self) {
        // A full pipe already holds a wake-up, so a failed write loses nothing.
        let _ = (&self.pipe).write(&[1]);
    }
}

/// The running shards.
pub struct Engine {
    local_addr: SocketAddr,
    threads: Vec<JoinHandle<ShardStats>>,
    snapshots: Vec<Arc<Mutex<ShardStats>>>,
    peers_wanted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    wakers: Arc<[Waker]>,
    shutdown_rx: UnixStream,
    shutdown_tx: UnixStream,
    signals: Vec<SigId>,
    steered: bool,
    gso: bool,
    gro: bool,
    io_backend: &'static str,
    io_fallback: Option<UringRefused>,
}

impl Engine {
    /// Binds every shard's socket in shard order, attaches the steering program and starts the
    /// shard threads; each shard gets its own endpoint for `identity`, keyed from `seed`.
    pub fn start(config: &EngineConfig, identity: &Identity, seed: [u8; 32]) -> io::Result<Engine> {
        Ok(Engine::start_inner(config, identity, seed, None)?.0)
    }

    /// Like [`Engine::start`], with a worker: application messages go to the returned queue
    /// (bounded by `queue`, per direction and shard), replies come back through its replier.
    pub fn start_with_worker(
        config: &EngineConfig,
        identity: &Identity,
        seed: [u8; 32],
        queue: usize,
    ) -> io::Result<(Engine, WorkerLink)> {
        let (engine, link) = Engine::start_inner(config, identity, seed, Some(queue.max(1)))?;
        let link = link.ok_or_else(|| io::Error::other("no worker link"))?;
        Ok((engine, link))
    }

    fn start_inner(
        config: &EngineConfig,
        identity: &Identity,
        seed: [u8; 32],
        worker_queue: Option<usize>,
    ) -> io::Result<(Engine, Option<WorkerLink>)> {
        let shards = if config.shards == 0 {
            default_shards()
        } else {
            config.shards
        };
        // PROTOCOL.md §12: the program's answer indexes sockets in the order they joined the
        // group, so shard i binds i-th; with port 0 the first picks the port the rest share.
        let mut sockets = Vec::with_capacity(shards);
        let first = sys::bind_reuseport(config.listen)?;
        let local_addr = first.local_addr()?;
        sockets.push(first);
        for _ in 1..shards {
            sockets.push(sys::bind_reuseport(local_addr)?);
        }
        let steered = config.steer && shards > 1;
        if steered {
            sys::attach_steering(&sockets[0], shards as u32)?;
        }
        let gro = sockets.iter().all(sys::enable_gro);
        let gso = sys::gso_supported(&sockets[0]);

        let mut polls = Vec::with_capacity(shards);
        let mut wakers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), super::backend::WAKER)?);
            polls.push(poll);
        }
        let wakers: Arc<[Waker]> = wakers.into();
        let (ios, io_fallback) = make_backends(
            config.io.tries_uring(),
            config.io == IoChoice::Uring,
            config.io_fault,
            polls,
            sockets,
            (gso, config.endpoint.spare_receive_slabs),
        )?;
        let io_backend = ios.first().map_or("epoll", Io::name);
        let (handover_tx, handover_rx): (Vec<Sender<Handover>>, Vec<Receiver<Handover>>) = (0
            ..shards)
            .map(|_| crossbeam_channel::bounded(HANDOVER_QUEUE))
            .unzip();
        let (recycle_tx, recycle_rx): (Vec<Sender<Handover>>, Vec<Receiver<Handover>>) = (0
            ..shards)
            .map(|_| crossbeam_channel::bounded(HANDOVER_QUEUE.saturating_mul(shards)))
            .unzip();
        let handover_tx: Arc<[Sender<Handover>]> = handover_tx.into();
        let (opens_tx, opens_rx): (Vec<Sender<Request>>, Vec<Receiver<Request>>) = (0..shards)
            .map(|_| crossbeam_channel::bounded(OPEN_QUEUE))
            .unzip();
        let opens_tx: Arc<[Sender<Request>]> = opens_tx.into();
        let bare_routes = Arc::new(BareRoutes::default());
        let recycle_tx: Arc<[Sender<Handover>]> = recycle_tx.into();
        let (link, mut shard_workers) = match worker_queue {
            Some(capacity) => {
                let (link, ends) = worker_queues(shards, capacity, Arc::clone(&wakers));
                (Some(link), ends.into_iter().map(Some).collect())
            }
            None => (None, Vec::new()),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let exit = Arc::new(Barrier::new(shards));
        let cores = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let now = Instant::now();
        let mut threads = Vec::with_capacity(shards);
        let mut snapshots = Vec::with_capacity(shards);
        let peers_wanted = Arc::new(AtomicBool::new(false));
        for (index, ((io, opens_rx), (handover_rx, recycle_rx))) in ios
            .into_iter()
            .zip(opens_rx)
            .zip(handover_rx.into_iter().zip(recycle_rx))
            .enumerate()
        {
            let shard_seed = blake3::keyed_hash(&seed, &(index as u64).to_le_bytes());
            let endpoint = Endpoint::new(
                config.endpoint.clone(),
                identity.clone(),
                *shard_seed.as_bytes(),
                now,
            );
            let snapshot = Arc::new(Mutex::new(ShardStats::default()));
            snapshots.push(Arc::clone(&snapshot));
            let parts = ShardParts {
                index,
                shards,
                endpoint,
                stop: Arc::clone(&stop),
                wakers: Arc::clone(&wakers),
                handover_tx: Arc::clone(&handover_tx),
                handover_rx,
                recycle_tx: Arc::clone(&recycle_tx),
                recycle_rx,
                snapshot,
                peers_wanted: Arc::clone(&peers_wanted),
                exit: Arc::clone(&exit),
                worker: shard_workers.get_mut(index).and_then(Option::take),
                bare_routes: Arc::clone(&bare_routes),
                opens_tx: Arc::clone(&opens_tx),
                opens_rx,
            };
            let exit_on_error = Arc::clone(&exit);
            let core = index.checked_rem(cores.len()).map(|i| cores[i]);
            let thread = std::thread::Builder::new()
                .name(format!("weft-shard-{index}"))
                .spawn(move || {
                    // Node memory is read apart from a load harness in the same process.
                    crate::heap::set_thread_account(crate::heap::Account::Node);
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core)
                    {
                        tracing::warn!(shard = index, "cannot pin the shard to its core");
                    }
                    match Shard::new(parts, io) {
                        Ok(shard) => shard.run(),
                        Err(e) => {
                            tracing::error!(shard = index, error = %e, "shard cannot start");
                            // The others meet at the exit barrier; this one must too.
                            exit_on_error.wait();
                            ShardStats::default()
                        }
                    }
                })?;
            threads.push(thread);
        }
        let (rx, tx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        let engine = Engine {
            local_addr,
            threads,
            snapshots,
            peers_wanted,
            stop,
            wakers,
            shutdown_rx: rx,
            shutdown_tx: tx,
            signals: Vec::new(),
            steered,
            gso,
            gro,
            io_backend,
            io_fallback,
        };
        Ok((engine, link))
    }

    /// The shared UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many shards run.
    pub fn shards(&self) -> usize {
        self.threads.len()
    }

    /// Whether the steering program is attached.
    pub fn steered(&self) -> bool {
        self.steered
    }

    /// The I/O backend really in use, `"uring"` or `"epoll"`, as `weft_engine_info` names it.
    pub fn io_backend(&self) -> &'static str {
        self.io_backend
    }

    /// Why [`IoChoice::Auto`] fell back to epoll, when it did (`weft_io_fallback_total`).
    pub fn io_fallback(&self) -> Option<&UringRefused> {
        self.io_fallback.as_ref()
    }

    /// Whether UDP GSO and GRO are in use (detected at start).
    pub fn offloads(&self) -> (bool, bool) {
        (self.gso, self.gro)
    }

    /// A handle that stops [`Engine::run`] from another thread.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        Ok(ShutdownHandle {
            pipe: self.shutdown_tx.try_clone()?,
        })
    }

    /// A flag that, while set, has every shard add its peers ([`ShardStats::peers`]) to the
    /// counters it publishes about once a second; for an operator's status view, off otherwise.
    pub fn peers_wanted(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.peers_wanted)
    }

    /// Makes SIGINT and SIGTERM stop [`Engine::run`]: the handler writes to the shutdown pipe.
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let pipe = self.shutdown_tx.try_clone()?;
            self.signals
                .push(signal_hook::low_level::pipe::register(signal, pipe)?);
        }
        Ok(())
    }

    /// Supervises the shards until a shutdown is asked for, calling `publish` with every shard's
    /// counters about once a second and once more at the end; returns the final counters.
    pub fn run(mut self, mut publish: impl FnMut(&[ShardStats])) -> io::Result<Vec<ShardStats>> {
        self.shutdown_rx
            .set_read_timeout(Some(super::PUBLISH_INTERVAL))?;
        let mut byte = [0u8; 64];
        loop {
            match self.shutdown_rx.read(&mut byte) {
                Ok(n) if n > 0 => break,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let current: Vec<ShardStats> = self
                .snapshots
                .iter()
                .map(|s| s.lock().map(|s| s.clone()).unwrap_or_default())
                .collect();
            publish(&current);
        }
        tracing::info!("shutting down");
        let last = self.stop_and_join();
        publish(&last);
        Ok(last)
    }

    fn stop_and_join(&mut self) -> Vec<ShardStats> {
        self.stop.store(true, Ordering::Release);
        for waker in self.wakers.iter() {
            let _ = waker.wake();
        }
        self.threads
            .drain(..)
            .map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for id in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.stop_and_join();
    }
}

/// Makes every shard's backend: io_uring for all shards or for none. With `try_uring`, a refusal
/// falls back to epoll and is returned with the backends, unless `required` (`--io uring`): then
/// it is the error, naming the errno. `fault` is [`EngineConfig::io_fault`].
fn make_backends(
    try_uring: bool,
    required: bool,
    fault: Option<i32>,
    polls: Vec<Poll>,
    sockets: Vec<std::net::UdpSocket>,
    (gso, spares): (bool, usize),
) -> io::Result<(Vec<Io>, Option<UringRefused>)> {
    let mut fallback = None;
    if try_uring {
        // Every ring is made before any socket is handed over, so a refusal (which comes at
        // the first ring, or at the memlock limit of a later one) leaves all sockets to epoll.
        let setups: Result<Vec<UringSetup>, UringRefused> = (0..sockets.len())
            .map(|_| UringSetup::new(fault, spares))
            .collect();
        match setups {
            Ok(setups) => {
                return setups
                    .into_iter()
                    .zip(polls.into_iter().zip(sockets))
                    .map(|(setup, (poll, socket))| {
                        UringIo::new(setup, poll, socket, gso).map(|io| Io::Uring(Box::new(io)))
                    })
                    .collect::<io::Result<Vec<Io>>>()
                    .map(|ios| (ios, None));
            }
            Err(refused) if required => return Err(refused.into_io_error()),
            Err(refused) => {
                tracing::warn!(
                    reason = refused.errno_name(),
                    error = %refused,
                    "io_uring refused; falling back to epoll"
                );
                fallback = Some(refused);
            }
        }
    }
    let ios = polls
        .into_iter()
        .zip(sockets)
        .map(|(poll, socket)| {
            EpollIo::new(poll, socket, gso, spares).map(|io| Io::Epoll(Box::new(io)))
        })
        .collect::<io::Result<Vec<Io>>>()?;
    Ok((ios, fallback))
}

/// Sums the shards' endpoint counters into one table, the node-wide view.
pub fn merged_endpoint_stats(shards: &[ShardStats]) -> Stats {
    let mut merged = Stats::new();
    for shard in shards {
        for entry in shard.endpoint.iter() {
            match entry.kind {
                StatKind::Counter => merged.add(entry.name, entry.label, entry.value),
                StatKind::Gauge => {
                    let sum = merged
                        .get(entry.name, entry.label)
                        .saturating_add(entry.value);
                    merged.set(entry.name, entry.label, sum);
                }
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(shards: usize) -> (Vec<Poll>, Vec<std::net::UdpSocket>) {
        let first = sys::bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = first.local_addr().unwrap();
        let mut sockets = vec![first];
        for _ in 1..shards {
            sockets.push(sys::bind_reuseport(address).unwrap());
        }
        ((0..shards).map(|_| Poll::new().unwrap()).collect(), sockets)
    }

    #[test]
    fn a_refused_ring_falls_back_to_epoll_unless_required() {
        // As a seccomp filter answers io_uring_setup.
        let (polls, sockets) = parts(2);
        let (ios, fallback) =
            make_backends(true, false, Some(libc::EPERM), polls, sockets, (false, 0)).unwrap();
        assert!(ios.iter().all(|io| io.name() == "epoll"));
        assert_eq!(fallback.map(|r| r.errno_name()), Some("EPERM"));

        let (polls, sockets) = parts(1);
        let Err(error) = make_backends(true, true, Some(libc::ENOMEM), polls, sockets, (false, 0))
        else {
            panic!("a required io_uring was refused and yet an engine started");
        };
        assert!(error.to_string().contains("ENOMEM"), "{error}");

        let (polls, sockets) = parts(1);
        let (ios, fallback) =
            make_backends(false, false, None, polls, sockets, (false, 0)).unwrap();
        assert_eq!(ios[0].name(), "epoll");
        assert!(fallback.is_none(), "epoll asked for: nothing fell back");
    }
}
