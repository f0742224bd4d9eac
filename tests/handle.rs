//! The slab against a model, and the index cipher's bijection (PROTOCOL.md §5, §8).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::sample::Index;
use weft::handle::{Handle, Hashcode, IndexCipher, MAX_LIMIT, Slab, SlabError};

/// What the slab should do, written from the rules rather than the layout: live objects by
/// handle, every hashcode ever handed out, and how many slots were ever used.
#[derive(Debug, Default)]
struct Model {
    limit: usize,
    index_bits: u32,
    live: HashMap<u32, (Hashcode, u64)>,
    issued: Vec<Hashcode>,
    slots_used: u32,
}

impl Model {
    fn new(limit: usize, index_bits: u32) -> Self {
        Self {
            limit,
            index_bits,
            ..Self::default()
        }
    }

    /// The slot an insert must take: the lowest one not in use.
    fn lowest_free(&self) -> u32 {
        (0..=self.slots_used)
            .find(|i| !self.live.contains_key(i))
            .expect("slots_used itself is never live")
    }

    fn index_of(&self, code: Hashcode) -> u32 {
        code.0 & ((1 << self.index_bits) - 1)
    }

    fn live_by_code(&self, code: Hashcode) -> Option<u32> {
        let index = self.index_of(code);
        match self.live.get(&index) {
            Some(&(live, _)) if live == code => Some(index),
            _ => None,
        }
    }

    /// The error for a hashcode that names no live object.
    fn miss(&self, code: Hashcode) -> SlabError {
        if self.index_of(code) < self.slots_used {
            SlabError::Stale
        } else {
            SlabError::OutOfRange
        }
    }

    fn lookup(&self, code: Hashcode) -> Result<(u32, u64), SlabError> {
        match self.live_by_code(code) {
            Some(index) => Ok((index, self.live[&index].1)),
            None => Err(self.miss(code)),
        }
    }
}

#[derive(Clone, Debug)]
enum Pick {
    /// One of the hashcodes handed out so far, live or not.
    Issued(Index),
    /// Any 32-bit value, as from the wire.
    Raw(u32),
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64),
    GetHandle(u32),
    SetHandle(u32, u64),
    RemoveHandle(u32),
    GetCode(Pick),
    SetCode(Pick, u64),
    RemoveCode(Pick),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => any::<Index>().prop_map(Pick::Issued),
        1 => any::<u32>().prop_map(Pick::Raw),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Handles a little past the limit, so that out-of-range ones come up too.
    let handle = 0u32..40;
    prop_oneof![
        5 => any::<u64>().prop_map(Op::Insert),
        2 => handle.clone().prop_map(Op::GetHandle),
        1 => (handle.clone(), any::<u64>()).prop_map(|(h, v)| Op::SetHandle(h, v)),
        2 => handle.prop_map(Op::RemoveHandle),
        2 => pick().prop_map(Op::GetCode),
        1 => (pick(), any::<u64>()).prop_map(|(p, v)| Op::SetCode(p, v)),
        2 => pick().prop_map(Op::RemoveCode),
    ]
}

fn resolve_pick(model: &Model, pick: &Pick) -> Hashcode {
    match pick {
        Pick::Issued(i) if !model.issued.is_empty() => *i.get(&model.issued),
        Pick::Issued(_) => Hashcode(0),
        Pick::Raw(raw) => Hashcode(*raw),
    }
}

fn check_whole(slab: &Slab<u64>, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(slab.len(), model.live.len());
    prop_assert_eq!(slab.is_empty(), model.live.is_empty());
    prop_assert_eq!(slab.is_full(), model.live.len() >= model.limit);
    let mut expected: Vec<(Handle, u64)> = model
        .live
        .iter()
        .map(|(&i, &(_, v))| (Handle(i), v))
        .collect();
    expected.sort_unstable();
    let seen: Vec<(Handle, u64)> = slab.iter().map(|(h, v)| (h, *v)).collect();
    prop_assert_eq!(seen, expected);
    for i in 0..=model.slots_used + 1 {
        let live = model.live.get(&i);
        prop_assert_eq!(slab.contains(Handle(i)), live.is_some());
        prop_assert_eq!(slab.hashcode(Handle(i)), live.map(|&(code, _)| code));
    }
    Ok(())
}

fn run(limit: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut slab: Slab<u64> = Slab::new(limit).expect("limit in range");
    let mut model = Model::new(limit, slab.index_bits());
    for op in ops {
        match op {
            Op::Insert(v) => {
                let got = slab.insert(*v);
                if model.live.len() >= limit {
                    prop_assert_eq!(got, Err(SlabError::Full));
                    continue;
                }
                let (handle, code) = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(handle, Handle(model.lowest_free()));
                prop_assert_eq!(model.index_of(code), handle.0);
                // No generation wraps in runs this short: every hashcode is new.
                prop_assert!(!model.issued.contains(&code), "{code:?} handed out twice");
                model.live.insert(handle.0, (code, *v));
                model.issued.push(code);
                model.slots_used = model.slots_used.max(handle.0 + 1);
            }
            Op::GetHandle(h) => {
                let expected = model.live.get(h).map(|&(_, v)| v);
                prop_assert_eq!(slab.get(Handle(*h)).copied(), expected);
            }
            Op::SetHandle(h, v) => {
                let got = slab.get_mut(Handle(*h)).map(|slot| *slot = *v);
                let expected = model.live.get_mut(h).map(|slot| slot.1 = *v);
                prop_assert_eq!(got, expected);
            }
            Op::RemoveHandle(h) => {
                let expected = model.live.remove(h).map(|(_, v)| v);
                prop_assert_eq!(slab.remove(Handle(*h)), expected);
            }
            Op::GetCode(p) => {
                let code = resolve_pick(&model, p);
                let expected = model.lookup(code);
                prop_assert_eq!(slab.get_by_code(code).copied(), expected.map(|(_, v)| v));
                prop_assert_eq!(slab.resolve(code), expected.map(|(i, _)| Handle(i)));
            }
            Op::SetCode(p, v) => {
                let code = resolve_pick(&model, p);
                let got = slab.get_mut_by_code(code).map(|slot| *slot = *v);
                let expected = model.lookup(code).map(|(i, _)| {
                    if let Some(slot) = model.live.get_mut(&i) {
                        slot.1 = *v;
                    }
                });
                prop_assert_eq!(got, expected);
            }
            Op::RemoveCode(p) => {
                let code = resolve_pick(&model, p);
                let expected = model.lookup(code);
                if let Ok((i, _)) = expected {
                    model.live.remove(&i);
                }
                prop_assert_eq!(slab.remove_by_code(code), expected.map(|(_, v)| v));
            }
        }
        check_whole(&slab, &model)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn slab_behaves_like_the_model(
        limit in prop_oneof![1usize..=33, Just(1 << 16), Just(MAX_LIMIT)],
        ops in prop::collection::vec(op(), 0..200),
    ) {
        run(limit, &ops)?;
    }

    #[test]
    fn decrypt_inverts_encrypt(secret in any::<[u8; 32]>(), x in any::<u32>()) {
        let cipher = IndexCipher::new(&secret);
        prop_assert_eq!(cipher.decrypt(cipher.encrypt(x)), x);
        prop_assert_eq!(cipher.encrypt(cipher.decrypt(x)), x);
        let code = Hashcode(x);
        prop_assert_eq!(Hashcode::from_wire(code.to_wire(&cipher), &cipher), code);
    }

    #[test]
    fn distinct_inputs_give_distinct_outputs(
        secret in any::<[u8; 32]>(),
        inputs in prop::collection::hash_set(any::<u32>(), 1..300),
    ) {
        let cipher = IndexCipher::new(&secret);
        let outputs: HashSet<u32> = inputs.iter().map(|&x| cipher.encrypt(x)).collect();
        prop_assert_eq!(outputs.len(), inputs.len());
    }
}

/// A slab's hashcodes, which count up from slot 0, look unrelated on the wire.
#[test]
fn wire_indexes_of_fresh_hashcodes_are_not_sequential() {
    let cipher = IndexCipher::new(&[7; 32]);
    let mut slab: Slab<()> = Slab::new(1 << 16).unwrap();
    let wire: Vec<u32> = (0..64)
        .map(|_| slab.insert(()).unwrap().1.to_wire(&cipher))
        .collect();
    let close = wire
        .windows(2)
        .filter(|w| w[0].abs_diff(w[1]) < 1 << 16)
        .count();
    assert!(close < 3, "{close} of 63 neighbours on the wire are close");
    for (i, &w) in wire.iter().enumerate() {
        let code = Hashcode::from_wire(w, &cipher);
        assert_eq!(slab.resolve(code), Ok(Handle(i as u32)));
    }
}
