//! The overlay's opcodes (seed 003 §3.2, PROTOCOL.md §10). Four bits on the wire; every value
//! names an opcode, so an unknown one is a framing error rather than a variant.

/// An RPC operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Opcode {
    /// A request succeeded; the reply's items follow.
    Ack = 0,
    /// A request failed; the reply's items say why.
    Nack = 1,
    /// Liveness: always answered `[ACK, id, PING]`.
    Ping = 2,
    /// `[option, setting]`: compression, preferred compression, subnet descriptor.
    SetConnectionOpt = 3,
    /// A node announces itself; relayed like SHOUT, carries an envelope.
    Announce = 4,
    /// `[current key, new key]`; relayed like SHOUT, carries an envelope.
    ChangeKey = 5,
    /// Flooded to every peer once; carries an envelope.
    Shout = 6,
    /// To direct peers only.
    Speak = 7,
    /// To one node; carries an envelope when relayed.
    Whisper = 8,
    /// `target node id`: the k closest contacts.
    FindNode = 9,
    /// `[address, key]`: the record, or the k closest contacts.
    FindValue = 10,
    /// `[address, key, value, metadata]`.
    Store = 11,
    /// A lease on a key (seed 003's "locks").
    Lock = 12,
    /// Compare-and-swap on a record's version.
    Cas = 13,
    /// Patch a map value.
    Diff = 14,
    /// An application's handler, by name.
    Custom = 15,
}

/// Every opcode, by value.
pub const ALL: [Opcode; 16] = [
    Opcode::Ack,
    Opcode::Nack,
    Opcode::Ping,
    Opcode::SetConnectionOpt,
    Opcode::Announce,
    Opcode::ChangeKey,
    Opcode::Shout,
    Opcode::Speak,
    Opcode::Whisper,
    Opcode::FindNode,
    Opcode::FindValue,
    Opcode::Store,
    Opcode::Lock,
    Opcode::Cas,
    Opcode::Diff,
    Opcode::Custom,
];

impl Opcode {
    /// The opcode a wire value names, if it names one.
    pub fn from_u64(value: u64) -> Option<Opcode> {
        usize::try_from(value)
            .ok()
            .and_then(|index| ALL.get(index))
            .copied()
    }

    /// Its wire value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Its name as a metric label and in `docs/OVERLAY.md`.
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Ack => "ack",
            Opcode::Nack => "nack",
            Opcode::Ping => "ping",
            Opcode::SetConnectionOpt => "set_connection_opt",
            Opcode::Announce => "announce",
            Opcode::ChangeKey => "change_key",
            Opcode::Shout => "shout",
            Opcode::Speak => "speak",
            Opcode::Whisper => "whisper",
            Opcode::FindNode => "find_node",
            Opcode::FindValue => "find_value",
            Opcode::Store => "store",
            Opcode::Lock => "lock",
            Opcode::Cas => "cas",
            Opcode::Diff => "diff",
            Opcode::Custom => "custom",
        }
    }

    /// True for ACK and NACK, which only answer.
    pub fn is_reply(self) -> bool {
        matches!(self, Opcode::Ack | Opcode::Nack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_seeds() {
        for (value, op) in ALL.iter().enumerate() {
            assert_eq!(usize::from(op.code()), value);
            assert_eq!(Opcode::from_u64(value as u64), Some(*op));
        }
        assert_eq!(Opcode::from_u64(16), None);
        assert_eq!(Opcode::from_u64(u64::MAX), None);
    }
}
