//! Signed envelopes (PROTOCOL.md §10): what is relayed (ANNOUNCE, CHANGE_KEY, SHOUT, recursive
//! WHISPER) and owned DHT values carry `[origin ed25519 pk, origin time, op, body, signature]`,
//! the signature by the origin's key over the canonical msgpack of the first four, after a
//! domain separation prefix. A relay cannot alter any of them without the signature failing.

use super::{Opcode, Value};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// What the signature covers, before the msgpack of `[pk, time, op, body]`.
const DOMAIN: &[u8] = b"weft v1 envelope";

/// A signed envelope as it travels.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The origin's Ed25519 public key (β = 256 bits).
    pub origin: [u8; 32],
    /// The origin's wall-clock time when it signed, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The operation the body is for.
    pub op: Opcode,
    /// The body.
    pub body: Value,
    /// Ed25519 over [`DOMAIN`] and the rest.
    pub signature: [u8; 64],
}

/// Why an envelope is refused; each is a metric reason label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not the five-item array of the schema.
    #[error("envelope does not follow the schema")]
    Malformed,
    /// The key is not a valid Ed25519 point, or the signature does not verify.
    #[error("envelope signature does not verify")]
    Forged,
}

impl EnvelopeError {
    /// The reason label it is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            EnvelopeError::Malformed => "envelope_malformed",
            EnvelopeError::Forged => "envelope_forged",
        }
    }
}

fn signed_bytes(origin: &[u8; 32], time_ms: u64, op: Opcode, body: &Value) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    Value::Array(vec![
        Value::Bin(origin.to_vec()),
        Value::UInt(time_ms),
        Value::UInt(u64::from(op.code())),
        body.clone(),
    ])
    .encode_into(&mut out);
    out
}

impl Envelope {
    /// Signs `body` for `op` as `key` at `time_ms`.
    pub fn sign(key: &SigningKey, time_ms: u64, op: Opcode, body: Value) -> Envelope {
        let origin = key.verifying_key().to_bytes();
        let signature = key
            .sign(&signed_bytes(&origin, time_ms, op, &body))
            .to_bytes();
        Envelope {
            origin,
            time_ms,
            op,
            body,
            signature,
        }
    }

    /// Checks the signature (strictly: no malleable or small-order keys).
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        let key = VerifyingKey::from_bytes(&self.origin).map_err(|_| EnvelopeError::Forged)?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(
            &signed_bytes(&self.origin, self.time_ms, self.op, &self.body),
            &signature,
        )
        .map_err(|_| EnvelopeError::Forged)
    }

    /// The envelope as a value.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Bin(self.origin.to_vec()),
            Value::UInt(self.time_ms),
            Value::UInt(u64::from(self.op.code())),
            self.body.clone(),
            Value::Bin(self.signature.to_vec()),
        ])
    }

    /// Reads the schema; the signature is not checked here ([`verify`](Self::verify)).
    pub fn from_value(value: &Value) -> Result<Envelope, EnvelopeError> {
        let [origin, time, op, body, signature] =
            value.as_array().ok_or(EnvelopeError::Malformed)?
        else {
            return Err(EnvelopeError::Malformed);
        };
        let origin = origin
            .as_bin()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(EnvelopeError::Malformed)?;
        let time_ms = time.as_u64().ok_or(EnvelopeError::Malformed)?;
        let op = op
            .as_u64()
            .and_then(Opcode::from_u64)
            .ok_or(EnvelopeError::Malformed)?;
        let signature = signature
            .as_bin()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or(EnvelopeError::Malformed)?;
        Ok(Envelope {
            origin,
            time_ms,
            op,
            body: body.clone(),
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn signed_envelopes_verify_and_altered_ones_do_not() {
        let envelope = Envelope::sign(&key(), 1_000, Opcode::Shout, Value::Str("hi".into()));
        assert_eq!(envelope.verify(), Ok(()));
        let back = Envelope::from_value(&envelope.to_value()).unwrap();
        assert_eq!(back, envelope);

        let mut altered = envelope.clone();
        altered.body = Value::Str("ho".into());
        assert_eq!(altered.verify(), Err(EnvelopeError::Forged));
        let mut altered = envelope.clone();
        altered.time_ms += 1;
        assert_eq!(altered.verify(), Err(EnvelopeError::Forged));
        let mut altered = envelope.clone();
        altered.op = Opcode::Announce;
        assert_eq!(altered.verify(), Err(EnvelopeError::Forged));
        let mut forged = envelope;
        forged.origin = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert_eq!(forged.verify(), Err(EnvelopeError::Forged));
    }

    #[test]
    fn schema_is_checked() {
        assert_eq!(
            Envelope::from_value(&Value::Array(vec![Value::Nil])),
            Err(EnvelopeError::Malformed)
        );
    }
}
