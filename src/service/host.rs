//! Several services on one worker: the overlay, the consensus service and echo share the one
//! worker link a node's shards feed (PROTOCOL.md §12), and the host hands each its own inputs.
//!
//! **Which service a message is for.** The wire has no service field (a channel is only a mode
//! and a pair of id halves, PROTOCOL.md §6), so every message a service sends starts with one
//! byte, its [`ServiceTag`], and the host routes on it. A byte per message keeps routing
//! stateless: nothing is learned from a peer's first message, so the host holds no per-channel
//! table a peer could fill, and a reliable unordered (SCTP-mode) channel needs no "hello" that
//! might arrive after the messages it names. A message whose tag no service here holds is
//! dropped and counted (`unknown_service`).
//!
//! **Echo** (`weft node --echo`, PROTOCOL.md §6) answers every DATA message with its own bytes, so
//! it cannot share channels with tagged services: on an echo node every message is echoed, and
//! the services run but hear nothing from the network.
//!
//! **Answers by token.** Opens and peer-info questions are answered asynchronously; the host
//! hands out the tokens and remembers which service asked, so a service sees only its own
//! answers. Closed channels go to every service: each knows which channels are its own.
//!
//! **Commands from the application.** [`HostHandle`] carries a command (any `Send` value) to one
//! service on the host's thread, so an application or the node's admin side can ask a service
//! something without sharing its state.

use super::{Delivery, Input, ReplyError, WorkerLink};
use crate::channel::ChannelHandle;
use crate::handle::FxHashMap;
use crate::stats::Stats;
use crate::wire::{Capabilities, CloseReason, PeerId};
use crossbeam_channel::{Receiver, Sender};
use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first byte of every message a service sends: names the service that receives it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceTag(pub u8);

impl ServiceTag {
    /// The overlay: RPCs with msgpack bodies (PROTOCOL.md §10).
    pub const OVERLAY: ServiceTag = ServiceTag(1);
    /// The consensus service that issues node ids (PROTOCOL.md §11).
    pub const CONSENSUS: ServiceTag = ServiceTag(2);
}

/// The body of a tagged message: its bytes after the tag (empty for an empty message).
pub fn body(delivery: &Delivery) -> &[u8] {
    delivery.data.get(1..).unwrap_or(&[])
}

/// A message for the application side of a service, sent through a [`HostHandle`]. The service
/// downcasts it to its own command type; an answer goes back on a channel the command carries.
pub type Command = Box<dyn Any + Send>;

/// One service on the host. Sans-IO in spirit: it is handed the time and its inputs, asks for
/// what it wants through the [`Context`], and reports its next deadline; the host owns the thread,
/// the clock and the queues.
pub trait Service: Send {
    /// The tag its messages carry.
    fn tag(&self) -> ServiceTag;

    /// A short name for logs and metrics labels.
    fn name(&self) -> &'static str;

    /// A message that arrived with this service's tag; [`body`] gives its bytes after the tag.
    fn on_message(&mut self, now: Instant, delivery: Delivery, cx: &mut Context<'_>);

    /// Every other input meant for this service: the answers to its opens and peer-info
    /// questions (by token), and every channel that closed (its own or not: a service ignores
    /// handles it does not know).
    fn on_input(&mut self, now: Instant, input: Input, cx: &mut Context<'_>);

    /// A command from the application side ([`HostHandle::send`]).
    fn on_command(&mut self, now: Instant, command: Command, cx: &mut Context<'_>) {
        let _ = (now, command, cx);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Runs what is due at `now`.
    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>);

    /// The host's pass over a batch of inputs (and the timers due) is done; what the service
    /// sends now still leaves with the batch's replies. A service that must make its state
    /// durable before answering (the overlay's STORE, issue 15.5) commits here once per batch
    /// instead of once per message.
    fn end_batch(&mut self, now: Instant, cx: &mut Context<'_>) {
        let _ = (now, cx);
    }
}

/// Why a service's request did not go out.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The shard's queue refused it, or the shards have stopped.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// Too many opens and questions wait for answers ([`MAX_PENDING_TOKENS`]).
    #[error("too many requests wait for an answer")]
    TooManyPending,
}

/// The most opens and peer-info questions all services together may have waiting: each holds a
/// map entry until its answer comes, and an answer always comes (opened, failed, or the info).
pub const MAX_PENDING_TOKENS: usize = 65_536;

/// What the host lends every service's [`Context`]: the one replier, the token book and the
/// host's counters. One place builds a context from it, so every call site lends the same.
struct Lent {
    replier: super::Replier,
    tokens: Tokens,
    stats: Stats,
}

impl Lent {
    /// The context for the service at `index` of the host's list, which holds `tag`.
    fn context(&mut self, index: usize, tag: ServiceTag) -> Context<'_> {
        Context {
            tag,
            service: index,
            replier: &mut self.replier,
            tokens: &mut self.tokens,
            stats: &mut self.stats,
        }
    }
}

/// What a service may ask while it handles an input.
pub struct Context<'a> {
    tag: ServiceTag,
    service: usize,
    replier: &'a mut super::Replier,
    tokens: &'a mut Tokens,
    stats: &'a mut Stats,
}

impl Context<'_> {
    /// Sends `body` on `channel` (owned by `shard`), with this service's tag in front.
    pub fn send(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        body: &[u8],
    ) -> Result<(), HostError> {
        let mut data = Vec::with_capacity(body.len().saturating_add(1));
        data.push(self.tag.0);
        data.extend_from_slice(body);
        self.replier.queue(shard, channel, data)?;
        Ok(())
    }

    /// Opens a channel to the node at `to` (its peer id when known); the answer comes to
    /// [`Service::on_input`] as [`Input::Opened`] or [`Input::OpenFailed`] with the token returned.
    pub fn open(
        &mut self,
        to: SocketAddr,
        peer: Option<PeerId>,
        capabilities: Capabilities,
    ) -> Result<u64, HostError> {
        self.open_inner(to, peer, capabilities, None)
    }

    /// [`open`](Self::open) with `body` (this service's tag in front) as the channel's first
    /// message, sent as early data: it leaves with the packet that completes the channel, a
    /// round trip through the worker sooner than a send after [`Input::Opened`]. Keep it small
    /// (the shard refuses one past the endpoint's `max_early_bytes`, and the open goes on).
    pub fn open_with(
        &mut self,
        to: SocketAddr,
        peer: Option<PeerId>,
        capabilities: Capabilities,
        body: &[u8],
    ) -> Result<u64, HostError> {
        let mut data = Vec::with_capacity(body.len().saturating_add(1));
        data.push(self.tag.0);
        data.extend_from_slice(body);
        self.open_inner(to, peer, capabilities, Some(data))
    }

    /// [`open_with`](Self::open_with) (`body` optional) to the peer of a signed `record` the
    /// service holds: the handshake is IK, not XX, when no session is cached
    /// ([`Replier::open_known`](super::Replier::open_known)).
    pub fn open_known(
        &mut self,
        to: SocketAddr,
        record: crate::session::PeerRecord,
        capabilities: Capabilities,
        body: Option<&[u8]>,
    ) -> Result<u64, HostError> {
        let early = body.map(|body| {
            let mut data = Vec::with_capacity(body.len().saturating_add(1));
            data.push(self.tag.0);
            data.extend_from_slice(body);
            data
        });
        let token = self.tokens.take(self.service)?;
        self.replier
            .open_known(token, to, record, capabilities, early)
            .inspect_err(|_| self.tokens.forget(token))?;
        Ok(token)
    }

    fn open_inner(
        &mut self,
        to: SocketAddr,
        peer: Option<PeerId>,
        capabilities: Capabilities,
        early: Option<Vec<u8>>,
    ) -> Result<u64, HostError> {
        let token = self.tokens.take(self.service)?;
        self.replier
            .open_with(token, to, peer, capabilities, early)
            .inspect_err(|_| self.tokens.forget(token))?;
        Ok(token)
    }

    /// Closes a channel, telling the peer why.
    pub fn close(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        reason: CloseReason,
    ) -> Result<(), HostError> {
        self.replier.close(shard, channel, reason)?;
        Ok(())
    }

    /// Asks what the shard that owns `peer` knows of it (address, session kind, RTT); the answer
    /// comes as [`Input::PeerInfo`] with the token returned.
    pub fn peer_info(&mut self, peer: PeerId) -> Result<u64, HostError> {
        let token = self.tokens.take(self.service)?;
        self.replier
            .peer_info(token, peer)
            .inspect_err(|_| self.tokens.forget(token))?;
        Ok(token)
    }

    /// The host's counters, exported with the node's metrics (names from `stats::catalog`).
    pub fn stats(&mut self) -> &mut Stats {
        self.stats
    }
}

/// Which service asked for each token still waiting for its answer.
#[derive(Default)]
struct Tokens {
    next: u64,
    owner: FxHashMap<u64, usize>,
}

impl Tokens {
    fn take(&mut self, service: usize) -> Result<u64, HostError> {
        if self.owner.len() >= MAX_PENDING_TOKENS {
            return Err(HostError::TooManyPending);
        }
        self.next = self.next.wrapping_add(1);
        self.owner.insert(self.next, service);
        Ok(self.next)
    }

    fn forget(&mut self, token: u64) {
        self.owner.remove(&token);
    }

    /// The service an answer is for; the token is spent.
    fn answer(&mut self, token: u64) -> Option<usize> {
        self.owner.remove(&token)
    }
}

/// Sends commands to the services on a running host.
#[derive(Clone)]
pub struct HostHandle {
    tx: Sender<(ServiceTag, Command)>,
}

impl HostHandle {
    /// Hands `command` to the service tagged `tag`; false if the host has stopped. A command
    /// for a tag no service holds is dropped.
    pub fn send(&self, tag: ServiceTag, command: Command) -> bool {
        self.tx.send((tag, command)).is_ok()
    }
}

/// The services one worker thread runs, and what they share.
pub struct Host {
    services: Vec<Box<dyn Service>>,
    echo: bool,
    commands: Receiver<(ServiceTag, Command)>,
    handle: HostHandle,
    published: Arc<Mutex<Stats>>,
}

/// How often the host copies its counters out for the metrics exporter.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Counter of messages the host dropped, by reason.
const DROPS: &str = "weft_service_messages_dropped_total";

impl Host {
    /// A host for `services` (at most one per tag); with `echo`, every message is echoed and
    /// the services hear nothing from the network (see the module doc).
    pub fn new(services: Vec<Box<dyn Service>>, echo: bool) -> Host {
        let (tx, commands) = crossbeam_channel::bounded(1024);
        Host {
            services,
            echo,
            commands,
            handle: HostHandle { tx },
            published: Arc::new(Mutex::new(Stats::new())),
        }
    }

    /// A handle that sends commands to the services once the host runs.
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// The host's counters as last copied out (every half second while it runs).
    pub fn stats(&self) -> Arc<Mutex<Stats>> {
        Arc::clone(&self.published)
    }

    /// Runs until the shards stop and the queue is drained; returns the count of echo replies
    /// the shards' queues refused.
    pub fn run(self, link: WorkerLink) -> u64 {
        crate::heap::set_thread_account(crate::heap::Account::Node);
        let Host {
            mut services,
            echo,
            commands,
            handle,
            published,
        } = self;
        // Only the host's own handle keeps the command queue open otherwise, which would keep
        // `select` from ever seeing it close; the application's clones are what count.
        drop(handle);
        let WorkerLink {
            deliveries,
            replier,
        } = link;
        let mut lent = Lent {
            replier,
            tokens: Tokens::default(),
            stats: Stats::new(),
        };
        let mut refused = 0u64;
        let mut last_publish = Instant::now();
        let mut commands_open = true;
        loop {
            // A turn at least every PUBLISH_EVERY: counters are published on a turn, and a quiet
            // node (a client certified, waiting for nothing) would otherwise show stale values.
            let deadline = services
                .iter()
                .filter_map(|s| s.poll_timeout())
                .chain(last_publish.checked_add(PUBLISH_EVERY))
                .min();
            // A busy node finds a batch waiting: take it without `select` (which registers on
            // every queue and makes a timer for the deadline), unless a command or a timer is
            // due, which `recv_or` serves in its turn.
            let quiet = (!commands_open || commands.is_empty())
                && deadline.is_none_or(|due| due > Instant::now());
            let woken = match quiet.then(|| deliveries.try_recv()).flatten() {
                Some(batch) => super::Woken::Inputs(batch),
                None => deliveries.recv_or(&commands, commands_open, deadline),
            };
            let now = Instant::now();
            match woken {
                super::Woken::Stopped => break,
                super::Woken::Timeout => {}
                super::Woken::OtherClosed => commands_open = false,
                super::Woken::Other((tag, command)) => {
                    if let Some(index) = services.iter().position(|s| s.tag() == tag) {
                        services[index].on_command(now, command, &mut lent.context(index, tag));
                    }
                }
                super::Woken::Inputs(mut batch) => {
                    for input in batch.drain(..) {
                        if echo {
                            if let Input::Message(delivery) = input
                                && lent
                                    .replier
                                    .queue(delivery.shard, delivery.channel, delivery.data)
                                    .is_err()
                            {
                                refused = refused.saturating_add(1);
                            }
                            continue;
                        }
                        route(now, input, &mut services, &mut lent);
                    }
                    deliveries.recycle(batch);
                }
            }
            for (index, service) in services.iter_mut().enumerate() {
                if service.poll_timeout().is_some_and(|due| due <= now) {
                    service.handle_timeout(now, &mut lent.context(index, service.tag()));
                }
            }
            for (index, service) in services.iter_mut().enumerate() {
                service.end_batch(now, &mut lent.context(index, service.tag()));
            }
            refused = refused.saturating_add(lent.replier.flush() as u64);
            if now.saturating_duration_since(last_publish) >= PUBLISH_EVERY {
                last_publish = now;
                if let Ok(mut shared) = published.lock() {
                    shared.clone_from(&lent.stats);
                }
            }
        }
        if let Ok(mut shared) = published.lock() {
            shared.clone_from(&lent.stats);
        }
        refused.saturating_add(lent.replier.flush() as u64)
    }
}

/// Hands one input to the service it is for.
fn route(now: Instant, input: Input, services: &mut [Box<dyn Service>], lent: &mut Lent) {
    match input {
        Input::Message(delivery) => {
            let tag = delivery.data.first().copied().map(ServiceTag);
            let Some(index) = tag.and_then(|tag| services.iter().position(|s| s.tag() == tag))
            else {
                lent.stats
                    .add(DROPS, Some(("reason", "unknown_service")), 1);
                return;
            };
            let service = &mut services[index];
            service.on_message(now, delivery, &mut lent.context(index, service.tag()));
        }
        Input::Closed { .. } => {
            for (index, service) in services.iter_mut().enumerate() {
                service.on_input(now, input.clone(), &mut lent.context(index, service.tag()));
            }
        }
        Input::Opened { token, .. }
        | Input::OpenFailed { token, .. }
        | Input::PeerInfo { token, .. } => {
            let Some(index) = lent.tokens.answer(token) else {
                lent.stats.add(DROPS, Some(("reason", "unknown_token")), 1);
                return;
            };
            if let Some(service) = services.get_mut(index) {
                service.on_input(now, input, &mut lent.context(index, service.tag()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{OpenFailure, Request, worker_queues};
    use mio::{Poll, Token, Waker};

    /// A service that writes down what it was handed.
    struct Recorder {
        tag: ServiceTag,
        seen: Arc<Mutex<Vec<String>>>,
        open_on_command: bool,
    }

    impl Recorder {
        fn note(&self, what: String) {
            self.seen.lock().unwrap().push(what);
        }
    }

    impl Service for Recorder {
        fn tag(&self) -> ServiceTag {
            self.tag
        }
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn on_message(&mut self, _now: Instant, delivery: Delivery, cx: &mut Context<'_>) {
            self.note(format!("message {:?}", body(&delivery)));
            cx.send(delivery.shard, delivery.channel, b"re").unwrap();
        }
        fn on_input(&mut self, _now: Instant, input: Input, _cx: &mut Context<'_>) {
            match input {
                Input::OpenFailed { token, .. } => self.note(format!("open failed {token}")),
                Input::Closed { .. } => self.note("closed".into()),
                other => self.note(format!("{other:?}")),
            }
        }
        fn on_command(&mut self, _now: Instant, command: Command, cx: &mut Context<'_>) {
            let word = command.downcast::<&'static str>().unwrap();
            self.note(format!("command {word}"));
            if self.open_on_command {
                let token = cx
                    .open("127.0.0.1:1".parse().unwrap(), None, Capabilities::NONE)
                    .unwrap();
                self.note(format!("asked {token}"));
            }
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn handle_timeout(&mut self, _now: Instant, _cx: &mut Context<'_>) {}
        fn end_batch(&mut self, _now: Instant, _cx: &mut Context<'_>) {
            let mut seen = self.seen.lock().unwrap();
            // Only the end of a pass that had inputs: idle passes would make the log vary.
            if seen.last().is_some_and(|l| !l.starts_with("end")) {
                seen.push("end of batch".into());
            }
        }
    }

    /// The messages among the shard's requests.
    fn sent(requests: Vec<Request>) -> Vec<Vec<u8>> {
        requests
            .into_iter()
            .filter_map(|r| match r {
                Request::Send { data, .. } => Some(data.into_vec()),
                _ => None,
            })
            .collect()
    }

    fn delivery(first: &[u8]) -> Delivery {
        Delivery {
            shard: 0,
            peer: PeerId([7; 16]),
            authenticated: true,
            channel: ChannelHandle(crate::handle::Hashcode(5)),
            capabilities: Capabilities::RESEND,
            message_number: 0,
            data: first.to_vec().into(),
        }
    }

    /// Runs a host with an overlay and a consensus recorder over one shard's queues, feeds it
    /// `inputs` and `commands`, stops it, and returns what each recorder saw and what the shard
    /// was asked for.
    fn run(
        echo: bool,
        inputs: Vec<Input>,
        commands: Vec<(ServiceTag, &'static str)>,
    ) -> (Vec<String>, Vec<String>, Vec<Request>, Stats) {
        let poll = Poll::new().unwrap();
        let wakers: Arc<[Waker]> = vec![Waker::new(poll.registry(), Token(1)).unwrap()].into();
        let (link, mut ends) = worker_queues(1, 64, wakers);
        let mut shard = ends.remove(0);
        let overlay = Arc::new(Mutex::new(Vec::new()));
        let consensus = Arc::new(Mutex::new(Vec::new()));
        let host = Host::new(
            vec![
                Box::new(Recorder {
                    tag: ServiceTag::OVERLAY,
                    seen: Arc::clone(&overlay),
                    open_on_command: true,
                }),
                Box::new(Recorder {
                    tag: ServiceTag::CONSENSUS,
                    seen: Arc::clone(&consensus),
                    open_on_command: false,
                }),
            ],
            echo,
        );
        let handle = host.handle();
        let stats = host.stats();
        let thread = std::thread::spawn(move || host.run(link));
        // Commands first, each seen before the inputs go in, so answers find their asker.
        let wanted = commands.iter().filter(|(tag, _)| tag.0 <= 2).count();
        for (tag, word) in commands {
            assert!(handle.send(tag, Box::new(word)));
        }
        let seen = |log: &Arc<Mutex<Vec<String>>>| {
            let log = log.lock().unwrap();
            log.iter().filter(|l| l.starts_with("command")).count()
        };
        let started = Instant::now();
        while seen(&overlay).saturating_add(seen(&consensus)) < wanted {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "commands not handled"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut batch = inputs;
        assert!(shard.push(&mut batch));
        shard.close_input();
        assert_eq!(thread.join().unwrap(), 0, "nothing refused");
        let mut requests = Vec::new();
        while let Some(batch) = shard.try_requests() {
            requests.extend(batch);
        }
        let stats = stats.lock().unwrap().clone();
        let overlay = overlay.lock().unwrap().clone();
        let consensus = consensus.lock().unwrap().clone();
        (overlay, consensus, requests, stats)
    }

    #[test]
    fn each_message_goes_to_the_service_its_first_byte_names_and_replies_carry_the_tag() {
        let (overlay, consensus, requests, stats) = run(
            false,
            vec![
                Input::Message(delivery(&[1, 10, 11])),
                Input::Message(delivery(&[2, 20])),
                Input::Message(delivery(&[9, 90])),
                Input::Message(delivery(&[])),
            ],
            vec![],
        );
        // One batch, one end of it, after every message of it.
        assert_eq!(overlay, ["message [10, 11]", "end of batch"]);
        assert_eq!(consensus, ["message [20]", "end of batch"]);
        let sent = sent(requests);
        assert_eq!(sent, [b"\x01re".to_vec(), b"\x02re".to_vec()]);
        assert_eq!(
            stats.get(DROPS, Some(("reason", "unknown_service"))),
            2,
            "an unknown tag and an empty message"
        );
    }

    #[test]
    fn an_echo_host_echoes_every_message_and_its_services_hear_none() {
        let (overlay, consensus, requests, _) = run(
            true,
            vec![
                Input::Message(delivery(&[1, 10])),
                Input::Message(delivery(&[42])),
            ],
            vec![],
        );
        assert!(overlay.is_empty() && consensus.is_empty());
        let sent = sent(requests);
        assert_eq!(sent, [vec![1, 10], vec![42]], "unchanged");
    }

    #[test]
    fn answers_go_to_the_service_that_asked_and_closes_to_every_service() {
        // The overlay recorder opens a channel on its command (token 1); its failure must reach
        // it and not the consensus recorder; a token nobody asked for is counted.
        let (overlay, consensus, requests, stats) = run(
            false,
            vec![
                Input::OpenFailed {
                    token: 1,
                    shard: 0,
                    reason: OpenFailure::Failed(CloseReason::Timeout),
                },
                Input::OpenFailed {
                    token: 99,
                    shard: 0,
                    reason: OpenFailure::Failed(CloseReason::Timeout),
                },
                Input::Closed {
                    shard: 0,
                    channel: ChannelHandle(crate::handle::Hashcode(5)),
                    reason: CloseReason::Normal,
                    by_peer: true,
                },
            ],
            vec![(ServiceTag::OVERLAY, "open"), (ServiceTag(77), "lost")],
        );
        assert_eq!(
            overlay,
            [
                "command open",
                "asked 1",
                "end of batch",
                "open failed 1",
                "closed",
                "end of batch"
            ]
        );
        assert_eq!(consensus, ["closed", "end of batch"]);
        assert!(matches!(
            requests.first(),
            Some(Request::Open { token: 1, .. })
        ));
        assert_eq!(stats.get(DROPS, Some(("reason", "unknown_token"))), 1);
    }
}
