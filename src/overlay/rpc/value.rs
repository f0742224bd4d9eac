//! The msgpack values an overlay body may hold (seed 003 §4.1.3.1, PROTOCOL.md §10): nil, bool,
//! f64, integers in [−2^63, 2^64), str and bin shorter than 2^32, arrays, and maps with string
//! keys. Encoded and decoded with `rmp-serde`; a body is accepted only in its one canonical
//! encoding (every length and integer in its smallest form, no float32, no ext, no trailing
//! bytes, no repeated map key), so the bytes an envelope signs are the bytes every node would
//! write for the same value.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::fmt;

/// A value of the restricted msgpack subset.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// msgpack nil.
    Nil,
    /// true or false.
    Bool(bool),
    /// A non-negative integer (every integer ≥ 0 decodes here, whatever marker carried it).
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A 64-bit float (NaN and the infinities included).
    F64(f64),
    /// A UTF-8 string.
    Str(String),
    /// A byte string.
    Bin(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map with string keys, in the order they were written.
    Map(Vec<(String, Value)>),
}

/// The bounds a body is decoded under, checked before and while decoding.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded body, checked before the first byte is decoded.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and maps.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 64 * 1024,
            max_depth: 16,
        }
    }
}

/// Why bytes are not a value of the subset; each variant is a metric reason label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Longer than [`Limits::max_bytes`].
    #[error("body larger than the size bound")]
    TooLarge,
    /// Not msgpack, a type outside the subset, or nested past [`Limits::max_depth`].
    #[error("body is not msgpack of the allowed types")]
    Malformed,
    /// Valid msgpack of the subset, but not in its canonical encoding.
    #[error("body is not canonically encoded")]
    NotCanonical,
}

impl ValueError {
    /// The reason label it is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            ValueError::TooLarge => "too_large",
            ValueError::Malformed => "malformed",
            ValueError::NotCanonical => "not_canonical",
        }
    }
}

impl Value {
    /// Decodes one value that fills `bytes` exactly, under `limits`.
    pub fn decode(bytes: &[u8], limits: Limits) -> Result<Value, ValueError> {
        // Seed 003 §4.1.3 gives no bound; PROTOCOL.md §9 does: the size is checked first.
        if bytes.len() > limits.max_bytes {
            return Err(ValueError::TooLarge);
        }
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        // rmp-serde counts the value itself as one level.
        de.set_max_depth(limits.max_depth.saturating_add(1));
        let value = Value::deserialize(&mut de).map_err(|_| ValueError::Malformed)?;
        // Re-encoding catches every non-canonical form at once: oversized markers, a str that
        // was not UTF-8 (rmp-serde hands it over as bytes), trailing bytes.
        if value.encode() != bytes {
            return Err(ValueError::NotCanonical);
        }
        Ok(value)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, and every value of the type is in the subset.
        let _ = self.serialize(&mut rmp_serde::Serializer::new(out));
    }

    /// The memory the value holds, itself and everything it owns (buffers at their capacity):
    /// what a record costs a node to keep. A msgpack nil is one byte on the wire and a whole
    /// `Value` in an array, so this is up to 32 times the encoding, and a budget of stored
    /// bytes charges this, not the wire size.
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<Value>().saturating_add(self.heap_bytes())
    }

    /// The heap buffers the value owns, its items' included.
    fn heap_bytes(&self) -> usize {
        let slots = |capacity: usize, each: usize| capacity.saturating_mul(each);
        match self {
            Value::Str(s) => s.capacity(),
            Value::Bin(b) => b.capacity(),
            Value::Array(items) => (items.iter()).fold(
                slots(items.capacity(), std::mem::size_of::<Value>()),
                |sum, item| sum.saturating_add(item.heap_bytes()),
            ),
            Value::Map(entries) => (entries.iter()).fold(
                slots(entries.capacity(), std::mem::size_of::<(String, Value)>()),
                |sum, (key, item)| {
                    sum.saturating_add(key.capacity())
                        .saturating_add(item.heap_bytes())
                },
            ),
            _ => 0,
        }
    }

    /// The string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, when it is a bin.
    pub fn as_bin(&self) -> Option<&[u8]> {
        match self {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, when it is a non-negative one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(n) => Some(*n),
            _ => None,
        }
    }

    /// The items, when it is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Looks `key` up, when it is a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::UInt(n) => s.serialize_u64(*n),
            Value::Int(n) => s.serialize_i64(*n),
            Value::F64(x) => s.serialize_f64(*x),
            Value::Str(text) => s.serialize_str(text),
            Value::Bin(bytes) => s.serialize_bytes(bytes),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

/// Never trusts a length a peer wrote for more than this many slots up front.
const PREALLOCATE: usize = 16;

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a msgpack value of seed 003's subset")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(match u64::try_from(v) {
            Ok(n) => Value::UInt(n),
            Err(_) => Value::Int(v),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v))
    }

    fn visit_f32<E: de::Error>(self, _: f32) -> Result<Value, E> {
        // Seed 003 §4.1.3.1 allows doubles only.
        Err(E::custom("float32"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(v.to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE));
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0).min(PREALLOCATE));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Value>()?;
            entries.push((key, value));
        }
        // A repeated key is ambiguous, so refused. Checked once, sorted: comparing each key
        // with every earlier one let a 64 KiB map of 10,000 short keys cost 50 million
        // comparisons (a peer's CPU amplification).
        let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair.first() == pair.last()) {
            return Err(de::Error::custom("repeated map key"));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(value: Value) {
        let bytes = value.encode();
        assert_eq!(Value::decode(&bytes, Limits::default()), Ok(value));
    }

    #[test]
    fn every_type_of_the_subset_round_trips() {
        round(Value::Nil);
        round(Value::Bool(true));
        round(Value::UInt(u64::MAX));
        round(Value::Int(i64::MIN));
        round(Value::F64(f64::INFINITY));
        round(Value::Str("weft".into()));
        round(Value::Bin(vec![0, 0, 1, 0xff]));
        round(Value::Array(vec![Value::Nil, Value::UInt(3)]));
        round(Value::Map(vec![("a".into(), Value::UInt(1))]));
    }

    #[test]
    fn seed_example_is_six_bytes() {
        // Seed 003 §4.1.3.2: b"\x00\x00\x01\xff" packs as c4 04 00 00 01 ff.
        let bytes = Value::Bin(vec![0, 0, 1, 0xff]).encode();
        assert_eq!(bytes, [0xc4, 0x04, 0x00, 0x00, 0x01, 0xff]);
    }

    #[test]
    fn outside_the_subset_is_refused() {
        let limits = Limits::default();
        // float32
        assert_eq!(
            Value::decode(&[0xca, 0, 0, 0, 0], limits),
            Err(ValueError::Malformed)
        );
        // fixext1
        assert_eq!(
            Value::decode(&[0xd4, 1, 0], limits),
            Err(ValueError::Malformed)
        );
        // map with an integer key
        assert_eq!(
            Value::decode(&[0x81, 0x01, 0xc0], limits),
            Err(ValueError::Malformed)
        );
        // 5 written as uint8: valid msgpack, not canonical
        assert_eq!(
            Value::decode(&[0xcc, 5], limits),
            Err(ValueError::NotCanonical)
        );
        // str that is not UTF-8
        assert_eq!(
            Value::decode(&[0xa1, 0xff], limits),
            Err(ValueError::NotCanonical)
        );
        // trailing byte
        assert_eq!(
            Value::decode(&[0xc0, 0xc0], limits),
            Err(ValueError::NotCanonical)
        );
        // repeated key
        assert_eq!(
            Value::decode(&[0x82, 0xa1, b'a', 1, 0xa1, b'a', 2], limits),
            Err(ValueError::Malformed)
        );
        // an array that claims 2^32-1 items and has none: refused without reserving them
        assert_eq!(
            Value::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff], limits),
            Err(ValueError::Malformed)
        );
    }

    #[test]
    fn bounds_are_checked() {
        let limits = Limits {
            max_bytes: 4,
            max_depth: 2,
        };
        assert_eq!(
            Value::decode(&[0xc4, 3, 1, 2, 3], limits),
            Err(ValueError::TooLarge)
        );
        assert_eq!(
            Value::decode(&[0x91, 0x91, 0x91, 0xc0], limits),
            Err(ValueError::Malformed)
        );
        assert!(Value::decode(&[0x91, 0x91, 0xc0], limits).is_ok());
    }
}
