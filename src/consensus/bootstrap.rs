//! Bootstrap from a URL (PROTOCOL.md §11, issue 14 point 7): the **member document** an operator
//! serves, and the consensus service of a node that waits for it.
//!
//! The document is the network's quorum-signed member-list chain (genesis keys, then every link,
//! [`super::trust`]) and the current members' self-signed peer records, which say where to reach
//! them. It is checked the way any node checks a chain, so the transport needs no trust of its
//! own: plain `http://` fetches it, and a tampered document fails its signatures. What the
//! transport cannot tell is *which* network is meant; a node that must not be steered to another
//! network is configured with its network id (the `expected` of [`MemberDocument::verify`]).
//!
//! On the wire: the hex digits of the msgpack encoding of [`MemberDocument`] (whitespace around
//! them allowed), at most [`MAX_DOCUMENT_BYTES`] bytes in all. docs/CONSENSUS.md has the schema
//! and a test vector.
//!
//! The fetching itself (sockets, deadlines, retries) is the node's; [`Waiting`] is the service
//! that holds the node's place until the verified members arrive as a [`Fetched`] command, and
//! meanwhile joins no cluster and starts none.

use super::MAX_MEMBERS;
use super::ids::{MemberKey, NetworkId};
use super::schema::Refusal;
use super::service::{ConsensusService, Settings, SharedView, View, metric};
use super::trust::{MemberList, MemberListChain, TrustError};
use crate::service::host::{Command, Context, Service, ServiceTag};
use crate::service::{Delivery, Input};
use crate::session::PeerRecord;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The version a document carries.
pub const DOCUMENT_VERSION: u8 = 1;

/// The longest document read (its hex text): room for a few hundred chain links; a longer chain
/// is refused rather than fetched.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// What a members URL serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDocument {
    /// [`DOCUMENT_VERSION`].
    pub version: u8,
    /// The member-list chain from genesis.
    pub chain: MemberListChain,
    /// The current members' signed peer records (`PeerRecord::to_bytes`), sorted by key.
    pub records: Vec<Vec<u8>>,
}

/// Why a document is not used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Longer than [`MAX_DOCUMENT_BYTES`].
    #[error("the member document is over {MAX_DOCUMENT_BYTES} bytes")]
    TooLong,
    /// Not hex, or not a document.
    #[error("not a member document (hex of msgpack, as `weft cluster members` prints): {0}")]
    Malformed(String),
    /// A version this build does not read.
    #[error("member document version {0}; this build reads version {DOCUMENT_VERSION}")]
    Version(u8),
    /// The chain does not verify.
    #[error("the member list chain does not verify: {0}")]
    Chain(#[from] TrustError),
    /// Another network than the configured one.
    #[error("the document is of network {found}, not the configured {expected}")]
    WrongNetwork {
        /// The configured id.
        expected: String,
        /// The document's.
        found: String,
    },
    /// A record that does not verify, of a non-member, twice, or without an address.
    #[error("member record {index}: {reason}")]
    Record {
        /// Its position.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Too few records to reach a quorum of the current members.
    #[error("records for {have} of the current members; a quorum is {need}")]
    TooFewRecords {
        /// Records given.
        have: usize,
        /// The quorum.
        need: usize,
    },
}

/// A document whose chain and records verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The network (BLAKE3 of the genesis keys).
    pub network: NetworkId,
    /// The current member list, the chain's last.
    pub list: MemberList,
    /// The current members' records, each with an address, sorted by key.
    pub records: Vec<PeerRecord>,
    /// The chain the list was verified by.
    pub chain: MemberListChain,
}

impl MemberDocument {
    /// The document of a network whose current members are `records` (its chain, `chain`).
    pub fn new(chain: MemberListChain, records: &[PeerRecord]) -> MemberDocument {
        let mut records: Vec<&PeerRecord> = records.iter().collect();
        records.sort_by_key(|r| r.ed25519);
        MemberDocument {
            version: DOCUMENT_VERSION,
            chain,
            records: records.iter().map(|r| r.to_bytes()).collect(),
        }
    }

    /// Its text: hex of msgpack, and a newline.
    pub fn to_text(&self) -> String {
        let bytes = rmp_serde::to_vec(self).unwrap_or_default();
        let mut text = super::service::hex(&bytes);
        text.push('\n');
        text
    }

    /// Reads a document's text, the size bound first.
    pub fn from_text(text: &[u8]) -> Result<MemberDocument, DocumentError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLong);
        }
        let digits = text.trim_ascii();
        if !digits.len().is_multiple_of(2) {
            return Err(DocumentError::Malformed(
                "an odd number of hex digits".into(),
            ));
        }
        let bytes = digits
            .chunks_exact(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| DocumentError::Malformed("not hex digits".into()))?;
        let document: MemberDocument =
            rmp_serde::from_slice(&bytes).map_err(|e| DocumentError::Malformed(e.to_string()))?;
        if document.version != DOCUMENT_VERSION {
            return Err(DocumentError::Version(document.version));
        }
        Ok(document)
    }

    /// Verifies the chain from its genesis (against `expected` when the network is configured)
    /// and every record: signed by its key, a current member, once, with an address; and at least
    /// a quorum of the current members given.
    pub fn verify(&self, expected: Option<NetworkId>) -> Result<Verified, DocumentError> {
        let network = NetworkId::of_genesis(&self.chain.genesis);
        if let Some(expected) = expected
            && expected != network
        {
            return Err(DocumentError::WrongNetwork {
                expected: super::service::hex(&expected.0),
                found: super::service::hex(&network.0),
            });
        }
        let list = self.chain.verify(&network)?;
        if self.records.len() > MAX_MEMBERS {
            return Err(DocumentError::TooFewRecords {
                have: self.records.len(),
                need: list.quorum(),
            });
        }
        let mut records: Vec<PeerRecord> = Vec::with_capacity(self.records.len());
        for (index, bytes) in self.records.iter().enumerate() {
            let bad = |reason: &str| DocumentError::Record {
                index,
                reason: reason.to_string(),
            };
            let record = PeerRecord::from_bytes(bytes).map_err(|e| bad(&e.to_string()))?;
            record
                .verify()
                .map_err(|_| bad("its signature does not verify"))?;
            if !list.contains(&MemberKey(record.ed25519)) {
                return Err(bad("not a current member"));
            }
            if records.iter().any(|r| r.ed25519 == record.ed25519) {
                return Err(bad("the same member twice"));
            }
            if record.addresses.is_empty() {
                return Err(bad("it names no address"));
            }
            records.push(record);
        }
        if records.len() < list.quorum() {
            return Err(DocumentError::TooFewRecords {
                have: records.len(),
                need: list.quorum(),
            });
        }
        records.sort_by_key(|r| r.ed25519);
        Ok(Verified {
            network,
            list,
            records,
            chain: self.chain.clone(),
        })
    }
}

/// The command the node's fetcher sends [`Waiting`] once a document verified: the members, and
/// the node's own record with the address members will see it at.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The verified document.
    pub verified: Verified,
    /// The node's own signed record.
    pub own: PeerRecord,
}

/// The consensus service of a node whose members come from a URL: until they arrive it is
/// nobody's member and asks nobody (so it never forks off a lone cluster); then it is the
/// [`ConsensusService`] of those members, in the view the node's admin side already holds.
pub struct Waiting {
    settings: Settings,
    view: SharedView,
    inner: Option<ConsensusService>,
    refused: u64,
    /// When the waiting gauge is next set: once a second, which also wakes the host to publish
    /// its counters (it publishes on a turn, and a waiting node may have no other turns).
    publish: Option<Instant>,
}

impl Waiting {
    /// Waits to run under `settings`, whose `members` the [`Fetched`] command brings.
    pub fn new(now: Instant, settings: Settings) -> Waiting {
        Waiting {
            settings,
            view: Arc::new(Mutex::new(View::default())),
            inner: None,
            refused: 0,
            publish: Some(now),
        }
    }

    /// The view `weft status` reads: empty (no network) until the members arrive.
    pub fn view(&self) -> SharedView {
        Arc::clone(&self.view)
    }

    fn start(&mut self, now: Instant, fetched: Fetched, cx: &mut Context<'_>) {
        let mut settings = self.settings.clone();
        settings.members = fetched.verified.records;
        settings.own = fetched.own;
        let genesis: Vec<MemberKey> = settings
            .members
            .iter()
            .map(|r| MemberKey(r.ed25519))
            .collect();
        settings.network = (NetworkId::of_genesis(&genesis) != fetched.verified.network)
            .then_some(fetched.verified.network);
        settings.chain = Some(fetched.verified.chain.clone());
        match ConsensusService::new(now, settings) {
            Ok(mut inner) => {
                tracing::info!(
                    network = %super::service::hex(&inner.network().0),
                    members = fetched.verified.list.members.len(),
                    "consensus members fetched and verified"
                );
                inner.share_view(Arc::clone(&self.view));
                inner.count_refused(Refusal::Unexpected, self.refused);
                cx.stats().set(metric::WAITING, None, 0);
                inner.handle_timeout(now, cx);
                self.inner = Some(inner);
            }
            Err(error) => {
                tracing::error!(%error, "the consensus store could not be opened");
            }
        }
    }
}

impl Service for Waiting {
    fn tag(&self) -> ServiceTag {
        ServiceTag::CONSENSUS
    }

    fn name(&self) -> &'static str {
        "consensus"
    }

    fn on_message(&mut self, now: Instant, delivery: Delivery, cx: &mut Context<'_>) {
        match &mut self.inner {
            Some(inner) => inner.on_message(now, delivery, cx),
            None => {
                // Nobody's member yet: nothing a peer sends has a place.
                self.refused = self.refused.saturating_add(1);
                let label = Some(("reason", Refusal::Unexpected.label()));
                cx.stats()
                    .set_counter(metric::REFUSALS, label, self.refused);
            }
        }
    }

    fn on_input(&mut self, now: Instant, input: Input, cx: &mut Context<'_>) {
        if let Some(inner) = &mut self.inner {
            inner.on_input(now, input, cx);
        }
    }

    fn on_command(&mut self, now: Instant, command: Command, cx: &mut Context<'_>) {
        match (&mut self.inner, command.downcast::<Fetched>()) {
            (None, Ok(fetched)) => self.start(now, *fetched, cx),
            (Some(inner), Err(command)) => inner.on_command(now, command, cx),
            // A second list while running: followed on the next start, not mid-flight.
            _ => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.inner {
            Some(inner) => inner.poll_timeout(),
            None => self.publish,
        }
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        match &mut self.inner {
            Some(inner) => inner.handle_timeout(now, cx),
            None => {
                self.publish = now.checked_add(std::time::Duration::from_secs(1));
                cx.stats().set(metric::WAITING, None, 1);
            }
        }
    }

    fn end_batch(&mut self, now: Instant, cx: &mut Context<'_>) {
        if let Some(inner) = &mut self.inner {
            inner.end_batch(now, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Identity;

    fn identity(n: u8) -> Identity {
        Identity::from_secret_bytes([n; 32], [n.wrapping_add(100); 32])
    }

    fn records(n: u8) -> Vec<PeerRecord> {
        (1..=n)
            .map(|i| {
                let address = format!("127.0.0.1:{}", 7700 + u16::from(i));
                PeerRecord::sign(&identity(i), &[address.parse().unwrap()])
            })
            .collect()
    }

    fn document(records: &[PeerRecord]) -> MemberDocument {
        let keys: Vec<MemberKey> = records.iter().map(|r| MemberKey(r.ed25519)).collect();
        MemberDocument::new(MemberListChain::new(&keys), records)
    }

    #[test]
    fn a_document_round_trips_through_its_text_and_verifies() {
        let records = records(3);
        let doc = document(&records);
        let read = MemberDocument::from_text(doc.to_text().as_bytes()).unwrap();
        assert_eq!(read, doc);
        let verified = read.verify(None).unwrap();
        assert_eq!(verified.list.members.len(), 3);
        assert_eq!(
            verified.network,
            NetworkId::of_genesis(&verified.list.members)
        );
        assert_eq!(read.verify(Some(verified.network)).unwrap(), verified);
        assert!(matches!(
            read.verify(Some(NetworkId([0; 32]))),
            Err(DocumentError::WrongNetwork { .. })
        ));
    }

    #[test]
    fn forged_short_foreign_and_oversized_documents_are_refused() {
        let all = records(4);
        let mut doc = document(&all[..3]);
        // A record of a non-member.
        doc.records.push(all[3].to_bytes());
        assert!(matches!(
            doc.verify(None),
            Err(DocumentError::Record { index: 3, .. })
        ));
        // A record whose bytes were changed after signing.
        let mut doc = document(&all[..3]);
        let last = doc.records[0].len() - 1;
        doc.records[0][last] ^= 1;
        assert!(matches!(
            doc.verify(None),
            Err(DocumentError::Record { .. })
        ));
        // Fewer records than a quorum of three (all three).
        let mut doc = document(&all[..3]);
        doc.records.pop();
        assert!(matches!(
            doc.verify(None),
            Err(DocumentError::TooFewRecords { have: 2, need: 3 })
        ));
        assert!(matches!(
            MemberDocument::from_text(&vec![b'0'; MAX_DOCUMENT_BYTES + 1]),
            Err(DocumentError::TooLong)
        ));
        assert!(matches!(
            MemberDocument::from_text(b"zz"),
            Err(DocumentError::Malformed(_))
        ));
        let mut old = document(&all[..1]);
        old.version = 9;
        assert_eq!(
            MemberDocument::from_text(old.to_text().as_bytes()),
            Err(DocumentError::Version(9))
        );
    }

    proptest::proptest! {
        /// Any bytes, as the text or as hex: refused or read, never a panic; what reads
        /// writes back to the same document.
        #[test]
        fn any_text_is_refused_or_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            for text in [bytes.clone(), super::super::service::hex(&bytes).into_bytes()] {
                if let Ok(document) = MemberDocument::from_text(&text) {
                    let _ = document.verify(None);
                    proptest::prop_assert_eq!(
                        MemberDocument::from_text(document.to_text().as_bytes()),
                        Ok(document)
                    );
                }
            }
        }
    }

    #[test]
    fn the_documented_test_vector_decodes_and_verifies() {
        let docs = include_str!("../../docs/CONSENSUS.md");
        let vector = docs
            .split("<!-- member-document-vector -->")
            .nth(1)
            .and_then(|rest| rest.split("```").nth(1))
            .expect("the vector block in docs/CONSENSUS.md");
        let text: String = vector.split_whitespace().collect();
        let expected = document(&records(1));
        assert_eq!(
            text,
            expected.to_text().trim(),
            "WEFT: regenerate the vector in docs/CONSENSUS.md"
        );
        let verified = MemberDocument::from_text(text.as_bytes())
            .unwrap()
            .verify(None)
            .unwrap();
        assert_eq!(verified.records, records(1));
    }
}
