//! Property tests of sender keys: one sender, two receivers, a network that drops, reorders,
//! duplicates and corrupts group messages, and rotation when a member leaves.
//!
//! Invariants: every message delivered intact decrypts exactly once to its plaintext; every
//! redelivery is a duplicate; every single-bit flip is rejected and leaves the receiver's
//! record unchanged; after a rotation the member who left cannot read new messages.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sotto_protocol::{
    DistributionId, GroupDecryptError, SenderKeyDistributionMessage, SenderKeyMessage,
    SenderKeyRecord,
};

const GROUP: DistributionId = DistributionId::from_bytes([0x5a; 16]);

#[derive(Clone, Debug)]
enum Op {
    Send { len: u8 },
    Deliver { to: usize, pick: u16 },
    Redeliver { to: usize, pick: u16 },
    Drop { to: usize, pick: u16 },
    Tamper { to: usize, pick: u16, bit: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(|len| Op::Send { len }),
        4 => (0usize..2, any::<u16>()).prop_map(|(to, pick)| Op::Deliver { to, pick }),
        1 => (0usize..2, any::<u16>()).prop_map(|(to, pick)| Op::Redeliver { to, pick }),
        1 => (0usize..2, any::<u16>()).prop_map(|(to, pick)| Op::Drop { to, pick }),
        2 => (0usize..2, any::<u16>(), any::<u32>()).prop_map(|(to, pick, bit)| Op::Tamper { to, pick, bit }),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Pending,
    Delivered,
    Dropped,
}

struct Sent {
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    fate: [Fate; 2],
}

fn pick(items: &[usize], pick: u16) -> Option<usize> {
    (!items.is_empty()).then(|| items[pick as usize % items.len()])
}

fn decrypt(record: &mut SenderKeyRecord, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let message = SenderKeyMessage::try_from(bytes).map_err(|e| e.to_string())?;
    if message.distribution_id() != GROUP {
        return Err("another group".into());
    }
    record.decrypt(&message).map_err(|e| format!("{e:?}"))
}

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut sender = SenderKeyRecord::new();
    let skdm = sender.create_distribution_message(GROUP, &mut rng).unwrap();
    let skdm = SenderKeyDistributionMessage::try_from(skdm.serialize()).unwrap();
    let mut receivers = [SenderKeyRecord::new(), SenderKeyRecord::new()];
    for r in &mut receivers {
        r.process_distribution_message(&skdm);
    }
    let mut sent: Vec<Sent> = Vec::new();
    for op in ops {
        let with = |to: usize, fate: Fate| -> Vec<usize> {
            (0..sent.len())
                .filter(|&i| sent[i].fate[to] == fate)
                .collect()
        };
        match *op {
            Op::Send { len } => {
                let plaintext = vec![sent.len() as u8; len as usize];
                let message = sender.encrypt(GROUP, &plaintext, &mut rng).unwrap();
                sent.push(Sent {
                    bytes: message.serialize().to_vec(),
                    plaintext,
                    fate: [Fate::Pending; 2],
                });
            }
            Op::Deliver { to, pick: p } => {
                let Some(i) = pick(&with(to, Fate::Pending), p) else {
                    continue;
                };
                let plaintext =
                    decrypt(&mut receivers[to], &sent[i].bytes).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&plaintext, &sent[i].plaintext);
                sent[i].fate[to] = Fate::Delivered;
            }
            Op::Redeliver { to, pick: p } => {
                let Some(i) = pick(&with(to, Fate::Delivered), p) else {
                    continue;
                };
                let before = receivers[to].serialize();
                let result = decrypt(&mut receivers[to], &sent[i].bytes);
                prop_assert!(
                    result.as_ref().is_err_and(|e| e.starts_with("Duplicate")),
                    "{:?}",
                    result
                );
                prop_assert_eq!(before, receivers[to].serialize());
            }
            Op::Drop { to, pick: p } => {
                let Some(i) = pick(&with(to, Fate::Pending), p) else {
                    continue;
                };
                sent[i].fate[to] = Fate::Dropped;
            }
            Op::Tamper { to, pick: p, bit } => {
                let all: Vec<usize> = (0..sent.len()).collect();
                let Some(i) = pick(&all, p) else { continue };
                let mut bytes = sent[i].bytes.clone();
                let bit = bit as usize % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
                let before = receivers[to].serialize();
                prop_assert!(
                    decrypt(&mut receivers[to], &bytes).is_err(),
                    "bit {} of message {} accepted",
                    bit,
                    i
                );
                prop_assert_eq!(before, receivers[to].serialize());
            }
        }
    }
    for (to, receiver) in receivers.iter_mut().enumerate() {
        for message in sent.iter().filter(|m| m.fate[to] == Fate::Pending) {
            let plaintext = decrypt(receiver, &message.bytes).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&plaintext, &message.plaintext);
        }
    }
    // Receiver 1 leaves: the sender rotates and only receiver 0 gets the new chain.
    let rotated = sender.rotate(GROUP, &mut rng).unwrap();
    prop_assert_ne!(rotated.chain_id(), skdm.chain_id());
    receivers[0].process_distribution_message(&rotated);
    let message = sender.encrypt(GROUP, b"after rotation", &mut rng).unwrap();
    prop_assert_eq!(
        decrypt(&mut receivers[0], message.serialize()).map_err(TestCaseError::fail)?,
        b"after rotation".to_vec()
    );
    prop_assert_eq!(
        receivers[1].decrypt(&message),
        Err(GroupDecryptError::NoSenderKeyState {
            chain_id: rotated.chain_id()
        })
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_network_group(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..60)) {
        run(seed, &ops)?;
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut sender = SenderKeyRecord::new();
    let skdm = sender.create_distribution_message(GROUP, &mut rng).unwrap();
    let mut receiver = SenderKeyRecord::new();
    receiver.process_distribution_message(&skdm);
    let message = sender.encrypt(GROUP, b"exhaustive", &mut rng).unwrap();
    let bytes = message.serialize().to_vec();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let before = receiver.serialize();
        assert!(decrypt(&mut receiver, &b).is_err(), "bit {bit}");
        assert_eq!(before, receiver.serialize());
    }
    assert_eq!(decrypt(&mut receiver, &bytes).unwrap(), b"exhaustive");
}
