//! Criterion benchmarks of the protocol's hot paths:
//! PQXDH session setup (initiator, responder, and the responder's base key subgroup check
//! alone), one-way encrypt+decrypt of 100 B on an existing
//! chain, ping-pong (a DH ratchet step every message), sender-key encrypt and decrypt of
//! 100 B, and sealed sender v2 to 1, 100 and 1000 recipients.
//!
//! `cargo bench -p sotto-protocol --bench protocol`

// Benchmark setup: a failure is a broken benchmark.
#![allow(clippy::unwrap_used)]
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sotto_protocol::{
    sealed_sender_encrypt_v2, CertifiedSender, ContentHint, DeviceId, KeyPair, SealedContentType,
    SealedSenderV2Recipient, SenderCertificate, ServerCertificate, ServiceId,
    UnidentifiedSenderMessageContent,
};
use sotto_protocol::{
    CiphertextMessage, IdentityKeyPair, PqPolicy, PreKeySignalMessage, SessionRecord, SignalMessage,
};
use sotto_protocol::{DistributionId, KemKeyPair, SenderKeyRecord};
use sotto_test_support::device::{DeviceKeys, NOW_MS};

const PAYLOAD: [u8; 100] = [0x42; 100];

fn prekey_message(message: CiphertextMessage) -> PreKeySignalMessage {
    match message {
        CiphertextMessage::PreKey(m) => m,
        CiphertextMessage::Whisper(_) => unreachable!("first message is a PreKey message"),
    }
}

fn whisper(message: CiphertextMessage) -> SignalMessage {
    match message {
        CiphertextMessage::Whisper(m) => m,
        CiphertextMessage::PreKey(m) => m.message().clone(),
    }
}

/// Alice and Bob with an established PQXDH session (Bob has replied once).
fn established(rng: &mut ChaCha20Rng) -> (SessionRecord, SessionRecord) {
    let alice_identity = IdentityKeyPair::generate(rng);
    let bob = DeviceKeys::generate(rng, 2);
    let mut alice = SessionRecord::new();
    alice
        .initiate(
            &alice_identity,
            1,
            &bob.bundle(),
            PqPolicy::RequireKyber,
            NOW_MS,
            rng,
        )
        .unwrap();
    let first = prekey_message(alice.encrypt(b"hi", NOW_MS).unwrap());
    let mut bob_record = SessionRecord::new();
    bob_record
        .decrypt_prekey(&first, &bob.secrets(), rng)
        .unwrap();
    let reply = whisper(bob_record.encrypt(b"hello", NOW_MS).unwrap());
    alice.decrypt(&reply, rng).unwrap();
    (alice, bob_record)
}

fn session_setup(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice_identity = IdentityKeyPair::generate(&mut rng);
    let bob = DeviceKeys::generate(&mut rng, 2);
    let bundle = bob.bundle();
    let mut group = c.benchmark_group("pqxdh");
    group.bench_function("initiator (bundle check, PQXDH, first message)", |b| {
        b.iter(|| {
            let mut record = SessionRecord::new();
            record
                .initiate(
                    &alice_identity,
                    1,
                    &bundle,
                    PqPolicy::RequireKyber,
                    NOW_MS,
                    &mut rng,
                )
                .unwrap();
            record.encrypt(&PAYLOAD, NOW_MS).unwrap()
        })
    });
    let mut alice = SessionRecord::new();
    alice
        .initiate(
            &alice_identity,
            1,
            &bundle,
            PqPolicy::RequireKyber,
            NOW_MS,
            &mut rng,
        )
        .unwrap();
    let first = prekey_message(alice.encrypt(&PAYLOAD, NOW_MS).unwrap());
    group.bench_function("responder (PQXDH, decrypt first message)", |b| {
        b.iter(|| {
            let mut record = SessionRecord::new();
            record
                .decrypt_prekey(&first, &bob.secrets(), &mut rng)
                .unwrap()
        })
    });
    // The responder's part that refuses replays under a shifted base key, alone, to set
    // against the whole responder above.
    group.bench_function("responder: base key subgroup check alone", |b| {
        b.iter(|| black_box(first.base_key()).is_torsion_free())
    });
    group.finish();
}

fn double_ratchet(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut group = c.benchmark_group("double ratchet");
    let (mut alice, mut bob) = established(&mut rng);
    group.bench_function("one-way encrypt+decrypt 100 B", |b| {
        b.iter(|| {
            let message = whisper(alice.encrypt(&PAYLOAD, NOW_MS).unwrap());
            bob.decrypt(&message, &mut rng).unwrap()
        })
    });
    let (mut alice, mut bob) = established(&mut rng);
    group.bench_function("ping-pong pair (2 DH ratchet steps) 100 B", |b| {
        b.iter(|| {
            let message = whisper(alice.encrypt(&PAYLOAD, NOW_MS).unwrap());
            bob.decrypt(&message, &mut rng).unwrap();
            let message = whisper(bob.encrypt(&PAYLOAD, NOW_MS).unwrap());
            alice.decrypt(&message, &mut rng).unwrap()
        })
    });
    let (alice, _) = established(&mut rng);
    let bytes = alice.serialize();
    group.bench_function("session record serialize+parse", |b| {
        b.iter_batched(
            || bytes.clone(),
            |bytes| SessionRecord::try_from(&bytes[..]).unwrap().serialize(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The primitives the protocol is built from, for reading the figures above against.
fn primitives(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let ours = KeyPair::generate(&mut rng);
    let theirs = KeyPair::generate(&mut rng);
    let kem = KemKeyPair::generate(&mut rng);
    let (ciphertext, _) = kem.public_key.encapsulate(&mut rng);
    let signature = ours.private_key.sign(&[&PAYLOAD], &mut rng);
    let mut group = c.benchmark_group("primitives");
    group.bench_function("X25519 agreement", |b| {
        b.iter(|| ours.private_key.agree(&theirs.public_key).unwrap())
    });
    group.bench_function("X25519 key generation", |b| {
        b.iter(|| KeyPair::generate(&mut rng))
    });
    group.bench_function("XEdDSA sign", |b| {
        b.iter(|| ours.private_key.sign(&[&PAYLOAD], &mut rng))
    });
    group.bench_function("XEdDSA verify", |b| {
        b.iter(|| assert!(ours.public_key.verify_signature(&[&PAYLOAD], &signature)))
    });
    group.bench_function("Kyber1024 encapsulate", |b| {
        b.iter(|| kem.public_key.encapsulate(&mut rng))
    });
    group.bench_function("Kyber1024 decapsulate", |b| {
        b.iter(|| kem.secret_key.decapsulate(&ciphertext))
    });
    group.finish();
}

fn sender_keys(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let group = DistributionId::from_bytes([1; 16]);
    let mut sender = SenderKeyRecord::new();
    let skdm = sender.create_distribution_message(group, &mut rng).unwrap();
    let mut receiver = SenderKeyRecord::new();
    receiver.process_distribution_message(&skdm);
    // Decrypted on a fresh copy of the receiver each time: the next message on its chain.
    let message = sender.encrypt(group, &PAYLOAD, &mut rng).unwrap();
    let mut group_bench = c.benchmark_group("sender keys");
    group_bench.bench_function("encrypt 100 B", |b| {
        b.iter(|| sender.encrypt(group, &PAYLOAD, &mut rng).unwrap())
    });
    group_bench.bench_function("decrypt 100 B", |b| {
        b.iter_batched(
            || receiver.clone(),
            |mut r| r.decrypt(&message).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group_bench.finish();
}

fn sealed_sender(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let trust_root = KeyPair::generate(&mut rng);
    let server_key = KeyPair::generate(&mut rng);
    let sender = IdentityKeyPair::generate(&mut rng);
    let server_certificate =
        ServerCertificate::new(1, server_key.public_key, &trust_root.private_key, &mut rng);
    let certificate = SenderCertificate::new(
        CertifiedSender {
            uuid: "9d0652a3-dcc3-4d11-975f-74d61598733f".into(),
            e164: None,
            device_id: DeviceId::from(1),
            identity_key: *sender.identity_key(),
            expiration_ms: NOW_MS + 86_400_000,
        },
        server_certificate,
        &server_key.private_key,
        &mut rng,
    );
    let usmc = UnidentifiedSenderMessageContent::new(
        SealedContentType::Whisper,
        certificate,
        PAYLOAD.to_vec(),
        ContentHint::Default,
        None,
    );
    let identities: Vec<IdentityKeyPair> = (0..1000)
        .map(|_| IdentityKeyPair::generate(&mut rng))
        .collect();
    let devices = [(DeviceId::from(1), 1234u32)];
    let mut group = c.benchmark_group("sealed sender v2");
    for count in [1usize, 100, 1000] {
        let recipients: Vec<SealedSenderV2Recipient<'_>> = identities[..count]
            .iter()
            .enumerate()
            .map(|(i, identity)| SealedSenderV2Recipient {
                service_id: ServiceId::Aci((i as u128).to_be_bytes()),
                devices: &devices,
                identity_key: identity.identity_key(),
            })
            .collect();
        if count == 1000 {
            group.sample_size(10);
        }
        group.bench_function(format!("seal to {count} recipients"), |b| {
            b.iter(|| sealed_sender_encrypt_v2(&recipients, &sender, &usmc, &mut rng).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    primitives,
    session_setup,
    double_ratchet,
    sender_keys,
    sealed_sender
);
criterion_main!(benches);
