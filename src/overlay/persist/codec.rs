//! How what the overlay keeps is written in its store: each entry one canonical msgpack value
//! of the overlay's subset (`rpc::value`), decoded under the same bounds as a peer's frame,
//! since a damaged or hand-edited file is input the node did not write.
//!
//! - record held for others: `[value, version, expires, next replicate, stored, owner]`
//!   (times in wall seconds; owner the storer's peer id, bin 16, or nil)
//! - record published: `[value, version, next republish]`
//! - contact: `[node id, peer id, address]`, as on the wire
//! - peer (address book, keyed by peer id): `[peer record (bin: its signed
//!   `session::PeerRecord`, at most `MAX_RECORD_BYTES`), address last reached, last seen]`

use crate::overlay::id::{addr_from_bytes, addr_to_bytes};
use crate::overlay::kademlia::{PeerEntry, PublishedRecord, Record};
use crate::overlay::rpc::message::{contact_from_value, contact_to_value};
use crate::overlay::rpc::{Limits, MAX_RECORD_BYTES, Value};
use crate::session::PeerRecord;
use crate::wire::PeerId;

/// The bounds an entry is decoded under: a record's value came in a frame, so it fits one,
/// with room for the fields around it.
const LIMITS: Limits = Limits {
    max_bytes: 64 * 1024 + 256,
    max_depth: 17,
};

/// An entry that is not what its table holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("entry does not decode as {0}")]
pub struct CodecError(pub &'static str);

fn items<'a>(
    bytes: &[u8],
    what: &'static str,
    out: &'a mut Value,
) -> Result<&'a [Value], CodecError> {
    *out = Value::decode(bytes, LIMITS).map_err(|_| CodecError(what))?;
    out.as_array().ok_or(CodecError(what))
}

fn uint(value: &Value, what: &'static str) -> Result<u64, CodecError> {
    value.as_u64().ok_or(CodecError(what))
}

/// A record held for others, as stored.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let owner = record
        .owner
        .map_or(Value::Nil, |peer| Value::Bin(peer.0.to_vec()));
    Value::Array(vec![
        record.value.clone(),
        Value::UInt(record.version),
        Value::UInt(record.expires),
        Value::UInt(record.next_replicate),
        Value::UInt(record.stored),
        owner,
    ])
    .encode()
}

/// The record `bytes` spell.
pub fn decode_record(bytes: &[u8]) -> Result<Record, CodecError> {
    const WHAT: &str = "a record";
    let mut value = Value::Nil;
    let [data, version, expires, next, stored, owner] = items(bytes, WHAT, &mut value)? else {
        return Err(CodecError(WHAT));
    };
    let owner = match owner {
        Value::Nil => None,
        other => Some(PeerId(
            other
                .as_bin()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or(CodecError(WHAT))?,
        )),
    };
    let mut record = Record::new(
        data.clone(),
        uint(version, WHAT)?,
        uint(expires, WHAT)?,
        uint(next, WHAT)?,
        uint(stored, WHAT)?,
    );
    record.owner = owner;
    Ok(record)
}

/// A published record, as stored.
pub fn encode_published(record: &PublishedRecord) -> Vec<u8> {
    Value::Array(vec![
        record.value.clone(),
        Value::UInt(record.version),
        Value::UInt(record.next),
    ])
    .encode()
}

/// The published record `bytes` spell.
pub fn decode_published(bytes: &[u8]) -> Result<PublishedRecord, CodecError> {
    const WHAT: &str = "a published record";
    let mut value = Value::Nil;
    let [data, version, next] = items(bytes, WHAT, &mut value)? else {
        return Err(CodecError(WHAT));
    };
    Ok(PublishedRecord {
        value: data.clone(),
        version: uint(version, WHAT)?,
        next: uint(next, WHAT)?,
    })
}

/// A contact, as stored.
pub fn encode_contact(contact: &crate::overlay::id::Contact) -> Vec<u8> {
    contact_to_value(contact).encode()
}

/// The contact `bytes` spell.
pub fn decode_contact(bytes: &[u8]) -> Result<crate::overlay::id::Contact, CodecError> {
    const WHAT: &str = "a contact";
    let value = Value::decode(bytes, LIMITS).map_err(|_| CodecError(WHAT))?;
    contact_from_value(&value).map_err(|_| CodecError(WHAT))
}

/// A peer of the address book, as stored.
pub fn encode_peer(peer: &PeerEntry) -> Vec<u8> {
    Value::Array(vec![
        Value::Bin(peer.record.to_bytes()),
        Value::Bin(addr_to_bytes(&peer.addr)),
        Value::UInt(peer.seen),
    ])
    .encode()
}

/// The peer `bytes` spell. Its record's signature is not checked here: the DHT verifies a
/// restored record before it uses it.
pub fn decode_peer(bytes: &[u8]) -> Result<PeerEntry, CodecError> {
    const WHAT: &str = "a peer";
    let mut value = Value::Nil;
    let [record, addr, seen] = items(bytes, WHAT, &mut value)? else {
        return Err(CodecError(WHAT));
    };
    let record = record
        .as_bin()
        .filter(|b| b.len() <= MAX_RECORD_BYTES)
        .and_then(|b| PeerRecord::from_bytes(b).ok())
        .ok_or(CodecError(WHAT))?;
    Ok(PeerEntry {
        record,
        addr: addr
            .as_bin()
            .and_then(addr_from_bytes)
            .ok_or(CodecError(WHAT))?,
        seen: uint(seen, WHAT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_round_trips() {
        let mut record = Record::new(Value::Str("v".into()), 3, 2_000, 1_500, 1_000);
        record.owner = Some(PeerId([9; 16]));
        assert_eq!(decode_record(&encode_record(&record)), Ok(record));
        let published = PublishedRecord {
            value: Value::UInt(1),
            version: 2,
            next: 3,
        };
        assert_eq!(
            decode_published(&encode_published(&published)),
            Ok(published)
        );
        let identity = crate::session::Identity::from_secret_bytes([1; 32], [2; 32]);
        let peer = PeerEntry {
            record: PeerRecord::sign(&identity, &["10.0.0.1:7700".parse().unwrap()]),
            addr: "[::1]:9".parse().unwrap(),
            seen: 7,
        };
        assert_eq!(decode_peer(&encode_peer(&peer)), Ok(peer));
    }

    #[test]
    fn what_is_not_an_entry_is_refused() {
        assert!(decode_record(&[0xc0]).is_err());
        assert!(decode_record(&Value::Array(vec![Value::Nil; 6]).encode()).is_err());
        assert!(decode_peer(&[0x91, 0xc0]).is_err());
        let junk = Value::Array(vec![
            Value::Bin(vec![1; 40]),
            Value::Bin(vec![127, 0, 0, 1, 0, 9]),
            Value::UInt(1),
        ]);
        assert!(decode_peer(&junk.encode()).is_err(), "not a peer record");
        assert!(decode_contact(&[]).is_err());
    }
}
