//! The bodies of the cargo-fuzz targets in `fuzz/`, kept here so that the normal test run
//! replays the committed corpus through exactly the code the fuzzer runs
//! (`crates/protocol/tests/it/fuzz_corpus.rs`).
//!
//! Every decoder body parses the raw input with the type's `TryFrom<&[u8]>` (or named parser)
//! and, when it parses, exercises the value: it re-serializes it and checks that the round trip
//! is stable (a type that keeps the received bytes must give back exactly the input), then feeds
//! it to the real operations on fixed sessions built from the libsignal transcript
//! [`FIXTURE`]: a message must either be rejected with the record left byte for byte unchanged,
//! or decrypt to the plaintext the transcript recorded for exactly those bytes. [`two_party`]
//! interprets its input as a script of operations between two parties with a real PQXDH
//! session. A body panics when an invariant fails: that panic is the fuzzer's finding.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use sotto_protocol::{
    pad, unpad, DistributionId, Fingerprint, FingerprintError, GroupDecryptError,
    GroupEncryptError, ScannableFingerprint, SenderKeyDistributionMessage, SenderKeyMessage,
    SenderKeyRecord, FINGERPRINT_ITERATIONS, PADDING_BLOCK_SIZE, SIGNATURE_LENGTH,
};
use sotto_protocol::{
    sealed_sender_decrypt, sealed_sender_decrypt_to_usmc, sealed_sender_encrypt_v2, DeviceId,
    SealedContentType, SealedSenderV2Recipient, SealedSenderV2SentMessage, SenderCertificate,
    ServerCertificate, ServiceId, UnidentifiedSenderMessageContent, MAX_VALID_DEVICE_ID,
    VALID_REGISTRATION_ID_MASK,
};
use sotto_protocol::{
    CiphertextMessage, DecryptError, IdentityKey, IdentityKeyPair, KemCiphertext, KemKeyPair,
    KemPublicKey, KyberPreKeyId, KyberPreKeyRecord, PqPolicy, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySecrets, PreKeySignalMessage, PublicKey, SessionRecord, SignalMessage, SignedPreKeyId,
    SignedPreKeyRecord, UsedPreKeys,
};

use crate::device::DeviceKeys;
use crate::forgery;
use crate::replay::ReplayRng;
use crate::transcript;
use crate::vectors::{hex_field, load, load_scenario, u64_field};

/// A target body: takes the raw fuzzer input, panics when an invariant fails.
pub type Target = fn(&[u8]);

/// Every fuzz target, by the name of its file in `fuzz/fuzz_targets/` and its corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("signal_message", signal_message),
    ("prekey_signal_message", prekey_signal_message),
    ("prekey_bundle", prekey_bundle),
    ("session_record", session_record),
    ("prekey_records", prekey_records),
    ("public_key", public_key),
    ("server_certificate", server_certificate),
    ("sender_certificate", sender_certificate),
    ("sealed_sender_content", sealed_sender_content),
    ("sealed_sender_open", sealed_sender_open),
    ("sealed_sender_v2_sent", sealed_sender_v2_sent),
    ("sender_key_message", sender_key_message),
    (
        "sender_key_distribution_message",
        sender_key_distribution_message,
    ),
    ("sender_key_record", sender_key_record),
    ("scannable_fingerprint", scannable_fingerprint),
    ("padding_unpad", padding_unpad),
    ("two_party", two_party),
];

/// The transcript the fixed sessions come from: a PQXDH (v4) session with a one-time prekey.
pub const FIXTURE: &str = "c_pqxdh_v4_kyber1024_base_seed1.json";

/// The time every operation is given: the transcripts' `now`.
const NOW_MS: u64 = 1_750_000_000_000;

/// Sends a `two_party` script may make; beyond this they are ignored, so that no chain ever
/// holds more skipped keys than [`sotto_protocol::MAX_MESSAGE_KEYS`] and every loss the model
/// predicts comes from receiving chains being dropped.
const MAX_SCRIPT_SENDS: usize = 1_000;

// ---------------------------------------------------------------------------------------------
// Fixed sessions from the transcript.
// ---------------------------------------------------------------------------------------------

/// Both parties of [`FIXTURE`], with the records at chosen points of the transcript.
struct Fixture {
    alice_identity: IdentityKeyPair,
    alice_registration_id: u32,
    bob: DeviceKeys,
    /// Bob's published bundle.
    bundle: PreKeyBundle,
    /// The key pair inside Bob's Kyber prekey.
    bob_kem: KemKeyPair,
    /// Alice right after processing the bundle: decrypts Bob's first replies.
    alice: SessionRecord,
    /// Bob right after decrypting the first message: decrypts Alice's later messages.
    bob_after_first: SessionRecord,
    /// The genuine PreKey messages, in transcript order.
    prekey_messages: Vec<PreKeySignalMessage>,
    /// The genuine Whisper messages, in transcript order.
    whisper_messages: Vec<SignalMessage>,
    /// Wire bytes of every `SignalMessage` of the session transcripts (embedded ones included)
    /// → its plaintext.
    plaintexts: HashMap<Vec<u8>, Vec<u8>>,
    /// Wire bytes of the `SignalMessage` embedded in each PreKey message of the transcripts →
    /// the base key and identity key of the PreKey messages that carry it: a PreKey message
    /// is accepted only under the names its sender gave it.
    prekey_names: HashMap<Vec<u8>, Vec<PreKeyName>>,
}

/// A PreKey message's base key and identity key, serialized: the names it goes under.
type PreKeyName = ([u8; 33], [u8; 33]);

fn fixture() -> &'static Fixture {
    static FIXTURE_CELL: OnceLock<Fixture> = OnceLock::new();
    FIXTURE_CELL.get_or_init(|| load_fixture(&load(FIXTURE)))
}

fn record_from(value: &Value) -> SessionRecord {
    SessionRecord::from_libsignal_bytes(&hex_field(value, "serialized"))
        .expect("transcript record loads")
}

/// The session transcripts: the same seed gives the same keys in each (and in the sealed
/// sender ones), so a message of any of them may be genuine for the fixed sessions.
const SESSION_TRANSCRIPTS: &[&str] = &["a_", "b_", "c_", "d_"];

/// The `encrypt` steps of a session transcript.
fn encrypt_steps(v: &Value) -> impl Iterator<Item = &Value> {
    let steps = v["steps"].as_array().expect("steps");
    steps.iter().filter(|s| s["event"] == "encrypt")
}

/// The embedded `SignalMessage` of an encrypted message (the message itself if Whisper).
fn signal_message_bytes(message: &Value) -> Vec<u8> {
    if message["type"] == "PreKey" {
        hex_field(&message["signal_message"], "serialized")
    } else {
        hex_field(message, "serialized")
    }
}

fn load_fixture(v: &Value) -> Fixture {
    let mut prekey_messages = Vec::new();
    let mut whisper_messages = Vec::new();
    for step in encrypt_steps(v) {
        let serialized = hex_field(&step["message"], "serialized");
        if step["message"]["type"] == "PreKey" {
            prekey_messages
                .push(PreKeySignalMessage::try_from(&serialized[..]).expect("PreKey message"));
        } else {
            whisper_messages.push(SignalMessage::try_from(&serialized[..]).expect("message"));
        }
    }
    let mut plaintexts = HashMap::new();
    let mut prekey_names: HashMap<Vec<u8>, Vec<PreKeyName>> = HashMap::new();
    let mut add_names = |message: &Value| {
        if message["type"] == "PreKey" {
            let message = PreKeySignalMessage::try_from(&hex_field(message, "serialized")[..])
                .expect("PreKey message");
            prekey_names
                .entry(message.message().serialize().to_vec())
                .or_default()
                .push((
                    message.base_key().serialize(),
                    message.identity_key().serialize(),
                ));
        }
    };
    for prefix in SESSION_TRANSCRIPTS {
        for (_, transcript) in load_scenario(prefix) {
            for step in encrypt_steps(&transcript) {
                let inner = signal_message_bytes(&step["message"]);
                plaintexts.insert(inner, hex_field(step, "plaintext_hex"));
                add_names(&step["message"]);
            }
        }
    }
    // The sealed sender transcripts wrap messages of the same sessions.
    for (_, transcript) in load_scenario("f_") {
        for step in transcript["steps"].as_array().expect("steps") {
            let (message, plaintext) = if step["inner_message"].is_null() {
                (&step["message"], hex_field(step, "plaintext_hex"))
            } else {
                (
                    &step["inner_message"],
                    hex_field(&step["decrypted"], "plaintext_hex"),
                )
            };
            plaintexts.insert(signal_message_bytes(message), plaintext);
            add_names(message);
        }
    }
    let steps = v["steps"].as_array().expect("steps");
    let first_decrypt = steps
        .iter()
        .find(|s| s["event"] == "decrypt" && s["recipient"] == "bob")
        .expect("Bob decrypts something");
    Fixture {
        alice_identity: transcript::identity(&v["alice"]),
        alice_registration_id: u64_field(&v["alice"], "registration_id") as u32,
        bob: transcript::bob(v),
        bundle: transcript::bundle(v),
        bob_kem: {
            let kpk = &v["bob"]["prekeys"]["kyber_prekey"];
            KemKeyPair::generate(&mut ReplayRng::new("Kyber key pair", &[&kpk["rng_draws"]]))
        },
        alice: record_from(&v["session_setup"]["alice_session_after"]),
        bob_after_first: record_from(&first_decrypt["recipient_session_after"]),
        prekey_messages,
        whisper_messages,
        plaintexts,
        prekey_names,
    }
}

/// A fixed RNG for the ratchet keys decryption draws: only determinism matters here.
fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5077_0f22)
}

// ---------------------------------------------------------------------------------------------
// Seed corpus.
// ---------------------------------------------------------------------------------------------

/// One input of the committed seed corpus (`fuzz/corpus/<target>/<name>`).
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target whose corpus it belongs to.
    pub target: &'static str,
    /// Its file name: transcript (`c1` = `c_…_seed1`), then what it is.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

/// The seed corpus: wire bytes, records and keys taken from the libsignal transcripts, plus a
/// few hand-written `two_party` scripts. `fuzz_corpus.rs` checks that every one of them is
/// committed (and writes them when `SOTTO_WRITE_FUZZ_SEEDS` is set).
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: String, bytes: Vec<u8>| {
        out.push(Seed {
            target,
            name,
            bytes,
        });
    };
    for (file, short) in [
        ("a_x3dh_v3_otpk_base_seed1.json", "a1"),
        ("b_x3dh_v3_no_otpk_base_seed1.json", "b1"),
        ("c_pqxdh_v4_kyber1024_base_seed1.json", "c1"),
        ("c_pqxdh_v4_kyber1024_base_seed2.json", "c2"),
        ("d_out_of_order_base_seed1.json", "d1"),
    ] {
        let v = load(file);
        // Every message of c1; the first PreKey and Whisper message of the others.
        let all = short == "c1";
        let steps = v["steps"].as_array().expect("steps");
        let encrypts: Vec<&Value> = steps.iter().filter(|s| s["event"] == "encrypt").collect();
        let mut prekeys = 0;
        let mut whispers = 0;
        for step in &encrypts {
            let label = step["message_label"].as_str().expect("label");
            let message = &step["message"];
            if message["type"] == "PreKey" {
                if all || prekeys == 0 {
                    add(
                        "prekey_signal_message",
                        format!("{short}-{label}"),
                        hex_field(message, "serialized"),
                    );
                    let inner = hex_field(&message["signal_message"], "serialized");
                    add("signal_message", format!("{short}-{label}-embedded"), inner);
                }
                if short == "c1" {
                    // Replays under other names: the base key shifted by each small-order
                    // point or written non-canonically (first message), another identity key
                    // (Bob's own) for the session the fixed Bob has (every message).
                    let parsed =
                        PreKeySignalMessage::try_from(&hex_field(message, "serialized")[..])
                            .expect("PreKey message");
                    if prekeys == 0 {
                        for (name, replay) in forgery::base_key_replays(&parsed) {
                            add(
                                "prekey_signal_message",
                                format!("{short}-{label}-{name}"),
                                replay.serialize().to_vec(),
                            );
                        }
                    }
                    let bob_identity = transcript::identity(&v["bob"]);
                    let forged = forgery::with_identity_key(&parsed, bob_identity.identity_key());
                    add(
                        "prekey_signal_message",
                        format!("{short}-{label}-bob-identity"),
                        forged.serialize().to_vec(),
                    );
                }
                prekeys += 1;
            } else {
                if all || whispers == 0 {
                    add(
                        "signal_message",
                        format!("{short}-{label}"),
                        hex_field(message, "serialized"),
                    );
                }
                whispers += 1;
            }
        }
        add(
            "prekey_bundle",
            format!("{short}-bundle"),
            transcript::bundle(&v).serialize(),
        );
        if short == "c2" {
            continue;
        }
        let decrypts = steps.iter().filter(|s| s["event"] == "decrypt");
        let first_decrypt = decrypts.clone().next().expect("a decrypt step");
        let final_sessions = &v["final_sessions"];
        for (name, record) in [
            (
                "alice-after-setup",
                &v["session_setup"]["alice_session_after"],
            ),
            ("bob-after-first", &first_decrypt["recipient_session_after"]),
            ("alice-final", &final_sessions["alice_with_bob"]),
            ("bob-final", &final_sessions["bob_with_alice"]),
        ] {
            if short != "c1" && name != "bob-final" {
                continue;
            }
            let bytes = hex_field(record, "serialized");
            if name == "bob-final" {
                // The versioned form of `SessionRecord::serialize` too.
                let mut versioned = vec![1];
                versioned.extend_from_slice(&bytes);
                add(
                    "session_record",
                    format!("{short}-{name}-versioned"),
                    versioned,
                );
            }
            add("session_record", format!("{short}-{name}"), bytes);
        }
        let prekeys = &v["bob"]["prekeys"];
        let identity = transcript::identity(&v["bob"]);
        add(
            "public_key",
            format!("{short}-bob-identity"),
            hex_field(&v["bob"], "identity_public"),
        );
        if !prekeys["one_time_prekey"].is_null() {
            let otpk = &prekeys["one_time_prekey"];
            let mut rng = ReplayRng::new("one-time prekey", &[&otpk["rng_draws"]]);
            let record =
                PreKeyRecord::generate(PreKeyId::from(u64_field(otpk, "id") as u32), &mut rng);
            add(
                "prekey_records",
                format!("{short}-one-time"),
                record.serialize(),
            );
        }
        let spk = &prekeys["signed_prekey"];
        let mut rng = ReplayRng::new(
            "signed prekey",
            &[&spk["rng_draws"], &spk["signature_rng_draws"]],
        );
        let signed = SignedPreKeyRecord::generate(
            SignedPreKeyId::from(u64_field(spk, "id") as u32),
            u64_field(spk, "timestamp_ms"),
            &identity,
            &mut rng,
        );
        add(
            "prekey_records",
            format!("{short}-signed"),
            signed.serialize(),
        );
        if short == "c1" {
            let f = fixture();
            add(
                "prekey_records",
                format!("{short}-kyber"),
                f.bob
                    .kyber
                    .as_ref()
                    .expect("transcript c has a Kyber prekey")
                    .serialize(),
            );
            add(
                "public_key",
                format!("{short}-signed-prekey"),
                hex_field(spk, "public"),
            );
            add(
                "public_key",
                format!("{short}-kyber-prekey"),
                f.bob_kem.public_key.serialize(),
            );
            let ciphertext = hex_field(&encrypts[0]["message"]["prekey"], "kyber_ciphertext");
            add(
                "public_key",
                format!("{short}-kyber-ciphertext"),
                ciphertext,
            );
            let ratchet = hex_field(&encrypts[0]["message"]["signal_message"], "ratchet_key");
            add("public_key", format!("{short}-ratchet-key"), ratchet);
        }
    }
    for (file, short) in [
        ("f_sealed_sender_base_seed1.json", "f1"),
        ("f_sealed_sender_base_seed2.json", "f2"),
    ] {
        let v = load(file);
        let certificates = &v["certificates"];
        let steps = v["steps"].as_array().expect("steps");
        for kind in ["server_certificate", "sender_certificate"] {
            add(
                kind,
                format!("{short}-{kind}"),
                hex_field(&certificates[kind], "serialized"),
            );
        }
        for step in steps.iter().filter(|s| !s["usmc"].is_null()) {
            let event = step["event"].as_str().expect("event");
            add(
                "sealed_sender_content",
                format!("{short}-{event}"),
                hex_field(&step["usmc"], "serialized"),
            );
        }
        add(
            "sealed_sender_open",
            format!("{short}-v1"),
            hex_field(&steps[0]["sealed"], "serialized"),
        );
        add(
            "sealed_sender_open",
            format!("{short}-v2"),
            hex_field(&steps[2]["received_message"], "serialized"),
        );
        add(
            "sealed_sender_v2_sent",
            format!("{short}-single"),
            hex_field(&steps[2]["sent_message"], "serialized"),
        );
        if short == "f1" {
            add(
                "sealed_sender_v2_sent",
                format!("{short}-multi"),
                multi_recipient_sent_message(&v),
            );
        }
    }
    for (file, short) in [
        ("e_sender_keys_base_seed1.json", "e1"),
        ("e_sender_keys_base_seed2.json", "e2"),
    ] {
        let v = load(file);
        add(
            "sender_key_distribution_message",
            format!("{short}-skdm"),
            hex_field(&v["skdm"], "serialized"),
        );
        for step in group_steps(&v) {
            let label = step["message_label"].as_str().expect("label");
            add(
                "sender_key_message",
                format!("{short}-{label}"),
                hex_field(&step["message"], "serialized"),
            );
        }
        for name in [
            "alice_sender_key_record_after_create",
            "bob_sender_key_record_after_process",
            "alice_sender_key_record_final",
        ] {
            add(
                "sender_key_record",
                format!("{short}-{name}"),
                hex_field(&v[name], "serialized"),
            );
        }
        let steps = v["steps"].as_array().expect("steps");
        if let Some(last) = steps.iter().rfind(|s| s["event"] == "group_decrypt") {
            let record = hex_field(&last["bob_sender_key_record_after"], "serialized");
            add(
                "sender_key_record",
                format!("{short}-bob_sender_key_record_final"),
                record,
            );
        }
    }
    for (file, short) in [
        ("g_fingerprints_base_seed1.json", "g1"),
        ("g_fingerprints_base_seed2.json", "g2"),
    ] {
        let v = load(file);
        for fp in v["fingerprints"].as_array().expect("fingerprints") {
            let version = u64_field(fp, "version");
            for side in ["scannable_alice", "scannable_bob"] {
                add(
                    "scannable_fingerprint",
                    format!("{short}-v{version}-{side}"),
                    hex_field(fp, side),
                );
            }
        }
    }
    // Padded transcript plaintexts (empty, short, one block exactly, longer).
    let c1 = load(FIXTURE);
    for step in encrypt_steps(&c1).take(2) {
        let label = step["message_label"].as_str().expect("label");
        add(
            "padding_unpad",
            format!("c1-{label}-padded"),
            pad(&hex_field(step, "plaintext_hex")),
        );
    }
    add("padding_unpad", "empty-padded".to_owned(), pad(&[]));
    add("padding_unpad", "159-padded".to_owned(), pad(&[0x80; 159]));
    add("padding_unpad", "160-padded".to_owned(), pad(&[0; 160]));
    for (name, script) in TWO_PARTY_SCRIPTS {
        add("two_party", (*name).to_owned(), script.to_vec());
    }
    out
}

/// The transcript's last sealed content, sealed again by Alice (with our `sealed_sender_encrypt_v2`) for
/// Bob's device, two devices of another account and an excluded account.
fn multi_recipient_sent_message(v: &Value) -> Vec<u8> {
    let step = &v["steps"][2];
    let content =
        UnidentifiedSenderMessageContent::try_from(&hex_field(&step["usmc"], "serialized")[..])
            .expect("transcript content");
    let alice = transcript::identity(&v["alice"]);
    let bob = *transcript::identity(&v["bob"]).identity_key();
    let carol = *IdentityKeyPair::generate(&mut rng()).identity_key();
    let bob_id =
        ServiceId::parse_service_id_string(v["bob"]["address"]["name"].as_str().expect("name"))
            .expect("Bob's service id");
    let bob_devices = [(
        DeviceId::from(1),
        u64_field(&v["bob"], "registration_id") as u32,
    )];
    let carol_devices = [(DeviceId::from(2), 42), (DeviceId::from(3), 43)];
    let recipients = [
        SealedSenderV2Recipient {
            service_id: ServiceId::Pni([3; 16]),
            devices: &[],
            identity_key: &carol,
        },
        SealedSenderV2Recipient {
            service_id: ServiceId::Aci([2; 16]),
            devices: &carol_devices,
            identity_key: &carol,
        },
        SealedSenderV2Recipient {
            service_id: bob_id,
            devices: &bob_devices,
            identity_key: &bob,
        },
    ];
    sealed_sender_encrypt_v2(&recipients, &alice, &content, &mut rng()).expect("seal")
}

/// Alice sends two messages, the first is delivered, then six turns (Bob sends, Alice
/// receives, Alice sends, Bob receives; op 7 delivers the newest message).
const EVICTED_CHAIN_SCRIPT: &[u8] = &[
    0, 1, 0, 1, 3, 0, 1, 1, 7, 0, 1, 7, 1, 1, 7, 0, 1, 7, 1, 1, 7, 0, 1, 7, 1, 1, 7, 0, 1, 7, 1, 1,
    7, 0, 1, 7, 1, 1, 7, 0, 1, 7,
];

/// Hand-written `two_party` scripts (see [`two_party`] for the opcodes).
const TWO_PARTY_SCRIPTS: &[(&str, &[u8])] = &[
    // Alice, Bob, Alice, each message delivered at once.
    ("ping-pong", &[0, 10, 2, 1, 10, 2, 0, 10, 2, 1, 0, 2]),
    // Three from Alice delivered 3, 1, 2; a redelivery of each; a reply.
    (
        "reorder-duplicate",
        &[0, 1, 0, 2, 0, 3, 7, 3, 0, 2, 4, 0, 4, 1, 4, 2, 1, 4, 2],
    ),
    // Drops, a tampered PreKey message, a tampered reply.
    (
        "drop-tamper",
        &[
            0, 5, 0, 6, 5, 0, 6, 0, 9, 1, 2, 1, 5, 6, 1, 200, 0, 2, 0, 0, 2,
        ],
    ),
    // A message of Alice's first chain held back while six turns create new chains: Bob has
    // dropped its chain by the time it arrives (`EVICTED_CHAIN_SCRIPT`).
    ("evicted-chain", EVICTED_CHAIN_SCRIPT),
    // Large messages and out-of-order delivery across a ratchet turn.
    (
        "turns",
        &[
            0, 255, 0, 255, 2, 1, 128, 1, 64, 3, 1, 0, 9, 3, 0, 2, 7, 2, 2,
        ],
    ),
];

/// Panics unless the fixed sessions accept the transcript's messages that belong to them, so
/// that the corpus really reaches the success paths of decryption.
pub fn check_fixture() {
    let f = fixture();
    let mut accepted = [0usize; 3];
    for message in &f.whisper_messages {
        for (n, record) in [&f.alice, &f.bob_after_first].into_iter().enumerate() {
            if record.clone().decrypt(message, &mut rng()).is_ok() {
                accepted[n] += 1;
            }
        }
    }
    for message in &f.prekey_messages {
        let mut bob = SessionRecord::new();
        if bob
            .decrypt_prekey(message, &f.bob.secrets(), &mut rng())
            .is_ok()
        {
            accepted[2] += 1;
        }
    }
    assert!(
        accepted[0] > 0,
        "Alice's fixed session accepts none of Bob's messages"
    );
    assert!(
        accepted[1] > 0,
        "Bob's fixed session accepts none of Alice's messages"
    );
    assert_eq!(
        accepted[2],
        f.prekey_messages.len(),
        "a fresh Bob rejects a PreKey message"
    );
    let s = sealed_fixture();
    for sealed in &s.sealed {
        let content =
            sealed_sender_decrypt(&s.bob_identity, sealed, &s.trust_root, s.validation_time_ms)
                .expect("Bob opens the transcript's sealed messages");
        assert!(s.contents.iter().any(|c| c == content.serialized()));
    }
    let sent = multi_recipient_sent_message(&load(SEALED_SENDER_FIXTURE));
    let sent = SealedSenderV2SentMessage::parse(&sent).expect("our SentMessage parses");
    let opened: Vec<bool> = (0..sent.recipients().len())
        .map(|i| {
            sent.received_message_for(i)
                .is_some_and(|m| sealed_sender_decrypt_to_usmc(&s.bob_identity, &m).is_ok())
        })
        .collect();
    assert_eq!(
        opened,
        [false, true, false],
        "only Bob's ReceivedMessage opens as Bob"
    );
    let sk = sender_keys_fixture();
    for message in &sk.messages {
        assert!(
            sk.bob.clone().decrypt(message).is_ok(),
            "Bob's sender key record rejects a message"
        );
    }
    let g = load(FINGERPRINT_FIXTURE);
    let fingerprints = g["fingerprints"].as_array().expect("fingerprints");
    for (ours, fp) in fingerprint_fixture().with_bob.iter().zip(fingerprints) {
        assert_eq!(ours.compare(&hex_field(fp, "scannable_bob")), Ok(true));
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks.
// ---------------------------------------------------------------------------------------------

/// Decrypts `message` on a copy of `record`: a rejection must leave the record unchanged; an
/// acceptance is only possible for a genuine transcript message and must give its plaintext;
/// on a `consistent` record (one we built, not a fuzzed one, which may for instance hold the
/// same skipped key twice) a second delivery must then be a duplicate.
fn check_decrypt(record: &SessionRecord, message: &SignalMessage, consistent: bool) {
    let f = fixture();
    let mut record = record.clone();
    let before = record.to_libsignal_bytes();
    match record.decrypt(message, &mut rng()) {
        Err(_) => assert_eq!(
            record.to_libsignal_bytes(),
            before,
            "a rejected message changed the record"
        ),
        Ok(plaintext) => {
            let expected = f.plaintexts.get(message.serialize());
            assert_eq!(
                Some(&plaintext),
                expected,
                "accepted a message that is not a genuine one"
            );
            if !consistent {
                return;
            }
            let after = record.to_libsignal_bytes();
            assert!(
                matches!(
                    record.decrypt(message, &mut rng()),
                    Err(DecryptError::Duplicate { .. })
                ),
                "a second delivery is not a duplicate"
            );
            assert_eq!(
                record.to_libsignal_bytes(),
                after,
                "a duplicate changed the record"
            );
        }
    }
}

/// [`check_decrypt`] for a PreKey message, with `keys` as the responder's secrets.
fn check_decrypt_prekey(
    record: &SessionRecord,
    message: &PreKeySignalMessage,
    keys: &PreKeySecrets<'_>,
    consistent: bool,
) {
    let f = fixture();
    let mut record = record.clone();
    let before = record.to_libsignal_bytes();
    // A session from the same key agreement, current or archived (it is promoted).
    let had_session = !record.needs_prekeys(message);
    match record.decrypt_prekey(message, keys, &mut rng()) {
        Err(_) => assert_eq!(
            record.to_libsignal_bytes(),
            before,
            "a rejected PreKey message changed the record"
        ),
        Ok(decryption) => {
            let expected = f.plaintexts.get(message.message().serialize());
            assert_eq!(
                Some(&decryption.plaintext),
                expected,
                "accepted a PreKey message that is not a genuine one"
            );
            // Not under another name either: a base key shifted by a small-order point or
            // written non-canonically (the same key agreement), or another identity key.
            let name = (
                message.base_key().serialize(),
                message.identity_key().serialize(),
            );
            assert!(
                f.prekey_names
                    .get(message.message().serialize())
                    .is_some_and(|names| names.contains(&name)),
                "accepted a PreKey message under a base key or identity key not its sender's"
            );
            if let Some(used) = decryption.used_pre_keys {
                assert_eq!(
                    used,
                    UsedPreKeys {
                        one_time: message.pre_key_id(),
                        signed: message.signed_pre_key_id(),
                        kyber: message.kyber_pre_key_id(),
                    }
                );
            } else {
                assert!(
                    had_session,
                    "no new session, yet there was none of its key agreement to decrypt with"
                );
            }
            if !consistent {
                return;
            }
            let after = record.to_libsignal_bytes();
            assert!(
                matches!(
                    record.decrypt_prekey(message, keys, &mut rng()),
                    Err(DecryptError::Duplicate { .. })
                ),
                "a second delivery of a PreKey message is not a duplicate"
            );
            assert_eq!(
                record.to_libsignal_bytes(),
                after,
                "a duplicate changed the record"
            );
        }
    }
}

fn same_signal_message(a: &SignalMessage, b: &SignalMessage) {
    assert_eq!(a.serialize(), b.serialize());
    assert_eq!(a.message_version(), b.message_version());
    assert_eq!(a.ratchet_key(), b.ratchet_key());
    assert_eq!(a.counter(), b.counter());
    assert_eq!(a.previous_counter(), b.previous_counter());
}

fn same_prekey_message(a: &PreKeySignalMessage, b: &PreKeySignalMessage) {
    assert_eq!(a.serialize(), b.serialize());
    assert_eq!(a.message_version(), b.message_version());
    assert_eq!(a.registration_id(), b.registration_id());
    assert_eq!(a.pre_key_id(), b.pre_key_id());
    assert_eq!(a.signed_pre_key_id(), b.signed_pre_key_id());
    assert_eq!(a.kyber_pre_key_id(), b.kyber_pre_key_id());
    assert_eq!(a.base_key(), b.base_key());
    assert_eq!(a.identity_key(), b.identity_key());
    same_signal_message(a.message(), b.message());
}

/// A `SignalMessage` on `message`'s chain with another counter (and so a wrong MAC), built
/// by hand: version byte, protobuf {1 ratchet key, 2 counter, 3 previous counter,
/// 4 ciphertext}, 8 MAC bytes.
fn with_counter(message: &SignalMessage, counter: u32) -> SignalMessage {
    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    let mut bytes = vec![message.serialize()[0], 0x0a, 33];
    bytes.extend_from_slice(&message.ratchet_key().serialize());
    bytes.push(0x10);
    varint(&mut bytes, counter.into());
    bytes.push(0x18);
    varint(&mut bytes, message.previous_counter().into());
    bytes.extend_from_slice(&[0x22, 16]);
    bytes.extend_from_slice(&[0; 16]);
    bytes.extend_from_slice(&[0; 8]);
    SignalMessage::try_from(&bytes[..]).expect("a well-formed SignalMessage")
}

/// What we send must parse back as what we built.
fn check_sent(message: &CiphertextMessage) {
    match message {
        CiphertextMessage::Whisper(m) => {
            let parsed =
                SignalMessage::try_from(m.serialize()).expect("our own SignalMessage parses");
            same_signal_message(m, &parsed);
        }
        CiphertextMessage::PreKey(m) => {
            let parsed = PreKeySignalMessage::try_from(m.serialize())
                .expect("our own PreKeySignalMessage parses");
            same_prekey_message(m, &parsed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder targets.
// ---------------------------------------------------------------------------------------------

/// `SignalMessage`: parse, round trip (the kept bytes are the input), decrypt on Alice's and
/// Bob's fixed sessions.
pub fn signal_message(data: &[u8]) {
    let Ok(message) = SignalMessage::try_from(data) else {
        return;
    };
    assert_eq!(
        message.serialize(),
        data,
        "the kept bytes are not the input"
    );
    let again = SignalMessage::try_from(message.serialize()).expect("re-parse");
    same_signal_message(&message, &again);
    let f = fixture();
    check_decrypt(&f.alice, &message, true);
    check_decrypt(&f.bob_after_first, &message, true);
}

/// `PreKeySignalMessage`: parse, round trip, decrypt as a fresh Bob (new session) and as Bob
/// after the first message (existing session).
pub fn prekey_signal_message(data: &[u8]) {
    let Ok(message) = PreKeySignalMessage::try_from(data) else {
        return;
    };
    assert_eq!(
        message.serialize(),
        data,
        "the kept bytes are not the input"
    );
    let again = PreKeySignalMessage::try_from(message.serialize()).expect("re-parse");
    same_prekey_message(&message, &again);
    let f = fixture();
    let secrets = f.bob.secrets();
    check_decrypt_prekey(&SessionRecord::new(), &message, &secrets, true);
    check_decrypt_prekey(&f.bob_after_first, &message, &secrets, true);
}

/// `PreKeyBundle`: parse, round trip, start a session from it as Alice; when the bundle holds
/// Bob's real keys, Bob must decrypt the first message.
pub fn prekey_bundle(data: &[u8]) {
    let Ok(bundle) = PreKeyBundle::try_from(data) else {
        return;
    };
    let bytes = bundle.serialize();
    let again = PreKeyBundle::try_from(&bytes[..]).expect("re-parse");
    assert_eq!(again.serialize(), bytes, "round trip is not stable");
    let f = fixture();
    let mut alice = SessionRecord::new();
    let setup = alice.initiate(
        &f.alice_identity,
        f.alice_registration_id,
        &bundle,
        PqPolicy::AllowClassic,
        NOW_MS,
        &mut rng(),
    );
    if setup.is_err() {
        assert!(
            !alice.has_current_session(),
            "a failed setup left a session"
        );
        return;
    }
    let message = alice
        .encrypt(b"first", NOW_MS)
        .expect("a new session encrypts");
    check_sent(&message);
    let CiphertextMessage::PreKey(message) = message else {
        panic!("a new session's first message is not a PreKey message");
    };
    // Bob must accept exactly the sessions started from his real keys. The one-time prekey is
    // not signed and X25519 ignores the top bit of a public key, so another encoding of it
    // may be accepted too.
    let bob = &f.bob;
    let real_signed_and_kyber = bundle.identity_key() == bob.identity.identity_key()
        && bundle.signed_pre_key() == f.bundle.signed_pre_key()
        && bundle.kyber_pre_key().is_none_or(|k| {
            bob.kyber
                .as_ref()
                .is_some_and(|b| k == (b.id(), b.public_key()))
        });
    let real_one_time = bundle.pre_key().is_none_or(|k| {
        bob.one_time
            .as_ref()
            .is_some_and(|b| k == (b.id(), b.public_key()))
    });
    let mut bob_record = SessionRecord::new();
    let result = bob_record.decrypt_prekey(&message, &bob.secrets(), &mut rng());
    if real_signed_and_kyber && real_one_time {
        let decrypted = result.expect("Bob decrypts a session started from his real keys");
        assert_eq!(decrypted.plaintext, b"first");
    } else if !real_signed_and_kyber {
        assert!(
            result.is_err(),
            "Bob accepted a session started from keys that are not his"
        );
    }
}

/// `SessionRecord`, both forms (`TryFrom`, versioned; `from_libsignal_bytes`): round trips,
/// then encrypting and decrypting the transcript's messages on it.
pub fn session_record(data: &[u8]) {
    if let Ok(record) = SessionRecord::try_from(data) {
        let bytes = record.serialize();
        let again = SessionRecord::try_from(&bytes[..]).expect("re-parse");
        assert_eq!(
            again.serialize(),
            bytes,
            "versioned round trip is not stable"
        );
        exercise_record(record);
    }
    if let Ok(record) = SessionRecord::from_libsignal_bytes(data) {
        exercise_record(record);
    }
}

fn exercise_record(record: SessionRecord) {
    let bytes = record.to_libsignal_bytes();
    let again = SessionRecord::from_libsignal_bytes(&bytes).expect("re-parse");
    assert_eq!(
        again.to_libsignal_bytes(),
        bytes,
        "libsignal round trip is not stable"
    );
    let _ = (
        record.session_version(),
        record.remote_identity(),
        record.remote_registration_id(),
    );

    let mut sender = record.clone();
    match sender.encrypt(b"fuzz", NOW_MS) {
        Ok(message) => check_sent(&message),
        Err(_) => assert_eq!(
            sender.to_libsignal_bytes(),
            bytes,
            "a failed encryption changed the record"
        ),
    }
    let f = fixture();
    let embedded = f.prekey_messages.iter().map(PreKeySignalMessage::message);
    for message in f.whisper_messages.iter().chain(embedded) {
        check_decrypt(&record, message, false);
        // The same chain at the extreme counters (forged, so to be rejected).
        for counter in [u32::MAX, u32::MAX - 1, message.counter().saturating_add(1)] {
            check_decrypt(&record, &with_counter(message, counter), false);
        }
    }
    let secrets = f.bob.secrets();
    for message in &f.prekey_messages {
        check_decrypt_prekey(&record, message, &secrets, false);
    }
    let mut archived = record;
    archived.archive_current_state();
    assert!(!archived.has_current_session());
    let bytes = archived.to_libsignal_bytes();
    let again = SessionRecord::from_libsignal_bytes(&bytes).expect("an archived record re-parses");
    assert_eq!(again.to_libsignal_bytes(), bytes);
}

/// `PreKeyRecord`, `SignedPreKeyRecord`, `KyberPreKeyRecord`: round trips, then each used as
/// Bob's key of its kind to accept the transcript's first message.
pub fn prekey_records(data: &[u8]) {
    let f = fixture();
    let first = &f.prekey_messages[0];
    if let Ok(record) = PreKeyRecord::try_from(data) {
        let bytes = record.serialize();
        let again = PreKeyRecord::try_from(&bytes[..]).expect("re-parse");
        assert_eq!(again.serialize(), bytes);
        assert_eq!(
            (again.id(), again.public_key()),
            (record.id(), record.public_key())
        );
        let secrets = PreKeySecrets {
            one_time_pre_key: Some(&record),
            ..f.bob.secrets()
        };
        check_decrypt_prekey(&SessionRecord::new(), first, &secrets, true);
    }
    if let Ok(record) = SignedPreKeyRecord::try_from(data) {
        let bytes = record.serialize();
        let again = SignedPreKeyRecord::try_from(&bytes[..]).expect("re-parse");
        assert_eq!(again.serialize(), bytes);
        assert_eq!(
            (
                again.id(),
                again.timestamp_ms(),
                again.public_key(),
                again.signature()
            ),
            (
                record.id(),
                record.timestamp_ms(),
                record.public_key(),
                record.signature()
            )
        );
        let secrets = PreKeySecrets {
            signed_pre_key: Some(&record),
            ..f.bob.secrets()
        };
        check_decrypt_prekey(&SessionRecord::new(), first, &secrets, true);
    }
    if let Ok(record) = KyberPreKeyRecord::try_from(data) {
        let bytes = record.serialize();
        let again = KyberPreKeyRecord::try_from(&bytes[..]).expect("re-parse");
        assert_eq!(again.serialize(), bytes);
        assert_eq!(
            (
                again.id(),
                again.timestamp_ms(),
                again.public_key(),
                again.signature()
            ),
            (
                record.id(),
                record.timestamp_ms(),
                record.public_key(),
                record.signature()
            )
        );
        let secrets = PreKeySecrets {
            kyber_pre_key: Some(&record),
            ..f.bob.secrets()
        };
        check_decrypt_prekey(&SessionRecord::new(), first, &secrets, true);
    }
}

/// Public keys and their kin: `PublicKey`, `IdentityKey` (33 bytes), `KemPublicKey`,
/// `KemCiphertext` (1569 bytes). Each keeps its exact bytes; each is then used.
pub fn public_key(data: &[u8]) {
    let f = fixture();
    if let Ok(key) = PublicKey::try_from(data) {
        assert_eq!(&key.serialize()[..], data);
        assert_eq!(
            PublicKey::from_djb_public_key_bytes(*key.public_key_bytes()),
            key
        );
        let _ = key.is_canonical();
        let _ = f.alice_identity.private_key().agree(&key);
        // The signed prekey's signature verifies under Bob's identity key and no other
        // encoding of it.
        let (_, signed) = f.bundle.signed_pre_key();
        let verifies =
            key.verify_signature(&[&signed.serialize()], f.bundle.signed_pre_key_signature());
        if key == *f.bob.identity.identity_key().public_key() {
            assert!(verifies);
        }
        let identity = IdentityKey::try_from(data).expect("an identity key is a public key");
        assert_eq!(identity.serialize(), key.serialize());
        assert_eq!(identity.public_key(), &key);
    }
    if let Ok(key) = KemPublicKey::try_from(data) {
        assert_eq!(key.serialize(), data);
        let (ciphertext, secret) = key.encapsulate(&mut rng());
        if key == f.bob_kem.public_key {
            assert_eq!(
                *f.bob_kem.secret_key.decapsulate(&ciphertext),
                *secret,
                "Kyber round trip"
            );
        }
    }
    if let Ok(ciphertext) = KemCiphertext::try_from(data) {
        assert_eq!(ciphertext.serialize(), data);
        let _ = f.bob_kem.secret_key.decapsulate(&ciphertext);
    }
}

// ---------------------------------------------------------------------------------------------
// Sealed sender.
// ---------------------------------------------------------------------------------------------

/// The sealed sender transcript the sealed sender targets use (Bob's keys are [`FIXTURE`]'s).
pub const SEALED_SENDER_FIXTURE: &str = "f_sealed_sender_base_seed1.json";

/// Bob's side of [`SEALED_SENDER_FIXTURE`].
struct SealedFixture {
    trust_root: PublicKey,
    validation_time_ms: u64,
    bob_identity: IdentityKeyPair,
    alice_identity: IdentityKey,
    server_certificate: ServerCertificate,
    sender_certificate: SenderCertificate,
    /// Every USMC the transcript sealed (serialized).
    contents: Vec<Vec<u8>>,
    /// The sealed messages Bob received (v1, then v2).
    sealed: Vec<Vec<u8>>,
}

fn sealed_fixture() -> &'static SealedFixture {
    static CELL: OnceLock<SealedFixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let v = load(SEALED_SENDER_FIXTURE);
        let certificates = &v["certificates"];
        let steps = v["steps"].as_array().expect("steps");
        SealedFixture {
            trust_root: PublicKey::try_from(&hex_field(&certificates["trust_root"], "public")[..])
                .expect("trust root"),
            validation_time_ms: u64_field(&v, "validation_time_ms"),
            bob_identity: transcript::identity(&v["bob"]),
            alice_identity: *transcript::identity(&v["alice"]).identity_key(),
            server_certificate: ServerCertificate::try_from(
                &hex_field(&certificates["server_certificate"], "serialized")[..],
            )
            .expect("server certificate"),
            sender_certificate: SenderCertificate::try_from(
                &hex_field(&certificates["sender_certificate"], "serialized")[..],
            )
            .expect("sender certificate"),
            contents: steps
                .iter()
                .filter(|s| !s["usmc"].is_null())
                .map(|s| hex_field(&s["usmc"], "serialized"))
                .collect(),
            sealed: vec![
                hex_field(&steps[0]["sealed"], "serialized"),
                hex_field(&steps[2]["received_message"], "serialized"),
            ],
        }
    })
}

/// `ServerCertificate`: parse, round trip (the kept bytes are the input), validate against
/// the transcript's trust root: only the genuine certificate can pass.
pub fn server_certificate(data: &[u8]) {
    let Ok(certificate) = ServerCertificate::try_from(data) else {
        return;
    };
    assert_eq!(
        certificate.serialized(),
        data,
        "the kept bytes are not the input"
    );
    let again = ServerCertificate::try_from(certificate.serialized()).expect("re-parse");
    assert_eq!(
        (
            again.key_id(),
            again.public_key(),
            again.certificate(),
            again.signature()
        ),
        (
            certificate.key_id(),
            certificate.public_key(),
            certificate.certificate(),
            certificate.signature()
        )
    );
    let s = sealed_fixture();
    if certificate.validate(&s.trust_root).is_ok() {
        assert_eq!(
            certificate.certificate(),
            s.server_certificate.certificate(),
            "forged server certificate"
        );
    }
}

/// `SenderCertificate`: parse, round trip, validate at the transcript's time: only the
/// genuine certificate (and server certificate) can pass.
pub fn sender_certificate(data: &[u8]) {
    let Ok(certificate) = SenderCertificate::try_from(data) else {
        return;
    };
    assert_eq!(
        certificate.serialized(),
        data,
        "the kept bytes are not the input"
    );
    check_sender_certificate(&certificate);
}

fn check_sender_certificate(certificate: &SenderCertificate) {
    let again = SenderCertificate::try_from(certificate.serialized()).expect("re-parse");
    assert_eq!(again.serialized(), certificate.serialized());
    assert_eq!(
        (
            again.key(),
            again.sender_device_id(),
            again.sender_uuid(),
            again.sender_e164()
        ),
        (
            certificate.key(),
            certificate.sender_device_id(),
            certificate.sender_uuid(),
            certificate.sender_e164()
        )
    );
    assert_eq!(
        (
            again.expiration_ms(),
            again.certificate(),
            again.signature()
        ),
        (
            certificate.expiration_ms(),
            certificate.certificate(),
            certificate.signature()
        )
    );
    assert_eq!(
        again.signer().certificate(),
        certificate.signer().certificate()
    );
    let _ = certificate.sender_aci();
    let s = sealed_fixture();
    if certificate
        .validate(&s.trust_root, s.validation_time_ms)
        .is_ok()
    {
        assert_eq!(
            certificate.certificate(),
            s.sender_certificate.certificate(),
            "forged sender certificate"
        );
        assert_eq!(
            certificate.signer().certificate(),
            s.server_certificate.certificate()
        );
        assert_eq!(certificate.key(), &s.alice_identity);
    }
}

/// `UnidentifiedSenderMessageContent`: parse, round trip (kept bytes; rebuilt from its
/// parts it parses to the same parts), then its certificate and inner message.
pub fn sealed_sender_content(data: &[u8]) {
    let Ok(content) = UnidentifiedSenderMessageContent::try_from(data) else {
        return;
    };
    assert_eq!(
        content.serialized(),
        data,
        "the kept bytes are not the input"
    );
    check_content(&content);
}

fn check_content(content: &UnidentifiedSenderMessageContent) {
    let rebuilt = UnidentifiedSenderMessageContent::new(
        content.msg_type(),
        content.sender().clone(),
        content.content().to_vec(),
        content.content_hint(),
        content.group_id().map(<[u8]>::to_vec),
    );
    let again = UnidentifiedSenderMessageContent::try_from(rebuilt.serialized()).expect("re-parse");
    assert_eq!(again.serialized(), rebuilt.serialized());
    assert_eq!(
        (again.msg_type(), again.content(), again.content_hint()),
        (
            content.msg_type(),
            content.content(),
            content.content_hint()
        )
    );
    assert_eq!(
        again.group_id(),
        content.group_id().filter(|id| !id.is_empty())
    );
    assert_eq!(again.sender().serialized(), content.sender().serialized());
    check_sender_certificate(content.sender());
    let f = fixture();
    match content.msg_type() {
        SealedContentType::PreKey => {
            if let Ok(message) = PreKeySignalMessage::try_from(content.content()) {
                check_decrypt_prekey(&SessionRecord::new(), &message, &f.bob.secrets(), true);
            }
        }
        SealedContentType::Whisper => {
            if let Ok(message) = SignalMessage::try_from(content.content()) {
                check_decrypt(&f.bob_after_first, &message, true);
            }
        }
        _ => {}
    }
}

/// Sealed sender v1 and v2 (ReceivedMessage) as delivered to Bob: opening with Bob's identity
/// yields only the contents the transcript sealed, whose certificate validates; anything else
/// is rejected.
pub fn sealed_sender_open(data: &[u8]) {
    let s = sealed_fixture();
    let opened = sealed_sender_decrypt_to_usmc(&s.bob_identity, data);
    let validated =
        sealed_sender_decrypt(&s.bob_identity, data, &s.trust_root, s.validation_time_ms);
    match opened {
        Ok(content) => {
            assert!(
                s.contents.iter().any(|c| c == content.serialized()),
                "opened a sealed message that is not a genuine one"
            );
            assert!(
                validated.is_ok(),
                "a genuine sealed message does not validate"
            );
            check_content(&content);
        }
        Err(_) => assert!(validated.is_err()),
    }
}

/// The server's parser of sealed sender v2 SentMessages: every recipient's ReceivedMessage is
/// well formed, and opening one as Bob gives a genuine content or an error.
pub fn sealed_sender_v2_sent(data: &[u8]) {
    let Ok(sent) = SealedSenderV2SentMessage::parse(data) else {
        return;
    };
    assert!(matches!(sent.version(), 0x22 | 0x23));
    let _ = format!("{sent:?}");
    let s = sealed_fixture();
    for (i, recipient) in sent.recipients().iter().enumerate() {
        assert_eq!(sent.recipient_index(&recipient.service_id()), Some(i));
        assert!(recipient.devices().iter().all(|(device, registration_id)| {
            (1..=MAX_VALID_DEVICE_ID).contains(&u32::from(*device))
                && *registration_id <= VALID_REGISTRATION_ID_MASK
        }));
        match sent.received_message_for(i) {
            None => assert!(
                recipient.is_excluded(),
                "no ReceivedMessage for a recipient with devices"
            ),
            Some(received) => {
                assert!(!recipient.is_excluded());
                assert_eq!(received.first(), Some(&0x22));
                if let Ok(content) = sealed_sender_decrypt_to_usmc(&s.bob_identity, &received) {
                    assert!(
                        s.contents.iter().any(|c| c == content.serialized()),
                        "opened a sealed message that is not a genuine one"
                    );
                }
            }
        }
    }
    assert!(sent.received_message_for(sent.recipients().len()).is_none());
}

// ---------------------------------------------------------------------------------------------
// Sender keys.
// ---------------------------------------------------------------------------------------------

/// The sender keys transcript the sender key targets use.
pub const SENDER_KEYS_FIXTURE: &str = "e_sender_keys_base_seed1.json";

/// Alice's and Bob's records of [`SENDER_KEYS_FIXTURE`] and its messages.
struct SenderKeysFixture {
    distribution_id: DistributionId,
    /// Bob's record after processing Alice's distribution message (decrypts every message).
    bob: SenderKeyRecord,
    /// The group messages, in order.
    messages: Vec<SenderKeyMessage>,
    /// The signed part (all but the signature) of every group message of the sender key
    /// transcripts → its plaintext.
    plaintexts: HashMap<Vec<u8>, Vec<u8>>,
}

fn distribution_id_from(v: &Value) -> DistributionId {
    let text = v["distribution_id"]
        .as_str()
        .expect("distribution_id")
        .replace('-', "");
    let bytes: [u8; 16] = hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("16 bytes");
    DistributionId::from_bytes(bytes)
}

fn group_steps(v: &Value) -> impl Iterator<Item = &Value> {
    let steps = v["steps"].as_array().expect("steps");
    steps.iter().filter(|s| s["event"] == "group_encrypt")
}

/// The part of a `SenderKeyMessage` its signature covers: equal for every valid signature.
fn signed_part(message: &[u8]) -> &[u8] {
    &message[..message.len() - SIGNATURE_LENGTH]
}

fn sender_keys_fixture() -> &'static SenderKeysFixture {
    static CELL: OnceLock<SenderKeysFixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let v = load(SENDER_KEYS_FIXTURE);
        let record = hex_field(&v["bob_sender_key_record_after_process"], "serialized");
        let mut plaintexts = HashMap::new();
        for (_, transcript) in load_scenario("e_") {
            for step in group_steps(&transcript) {
                let message = hex_field(&step["message"], "serialized");
                plaintexts.insert(
                    signed_part(&message).to_vec(),
                    hex_field(step, "plaintext_hex"),
                );
            }
        }
        SenderKeysFixture {
            distribution_id: distribution_id_from(&v),
            bob: SenderKeyRecord::try_from(&record[..]).expect("Bob's sender key record"),
            messages: group_steps(&v)
                .map(|s| {
                    SenderKeyMessage::try_from(&hex_field(&s["message"], "serialized")[..])
                        .expect("group message")
                })
                .collect(),
            plaintexts,
        }
    })
}

/// Decrypts `message` on a copy of `record`: a rejection leaves the record unchanged. On a
/// `genuine` record (one whose chain keys are the real ones) an acceptance must give the
/// transcript's plaintext of exactly the signed bytes, and a second delivery is a duplicate.
/// (Sender keys carry no MAC: under a right signing key but a wrong chain key, a message can
/// decrypt to garbage, so a fuzzed record only has to behave.)
fn check_group_decrypt(record: &SenderKeyRecord, message: &SenderKeyMessage, genuine: bool) {
    let mut record = record.clone();
    let before = record.serialize();
    match record.decrypt(message) {
        Err(_) => assert_eq!(
            record.serialize(),
            before,
            "a rejected group message changed the record"
        ),
        Ok(plaintext) if genuine => {
            let expected = sender_keys_fixture()
                .plaintexts
                .get(signed_part(message.serialize()));
            assert_eq!(
                Some(&plaintext),
                expected,
                "accepted a group message that is not a genuine one"
            );
            let after = record.serialize();
            assert!(
                matches!(
                    record.decrypt(message),
                    Err(GroupDecryptError::Duplicate { .. })
                ),
                "a second delivery of a group message is not a duplicate"
            );
            assert_eq!(record.serialize(), after, "a duplicate changed the record");
        }
        Ok(_) => {}
    }
}

/// `SenderKeyMessage`: parse, round trip (kept bytes), decrypt on Bob's fixed record.
pub fn sender_key_message(data: &[u8]) {
    let Ok(message) = SenderKeyMessage::try_from(data) else {
        return;
    };
    assert_eq!(
        message.serialize(),
        data,
        "the kept bytes are not the input"
    );
    let again = SenderKeyMessage::try_from(message.serialize()).expect("re-parse");
    assert_eq!(
        (again.distribution_id(), again.chain_id(), again.iteration()),
        (
            message.distribution_id(),
            message.chain_id(),
            message.iteration()
        )
    );
    check_group_decrypt(&sender_keys_fixture().bob, &message, true);
}

/// `SenderKeyDistributionMessage`: parse, round trip (kept bytes), process it into a fresh
/// record and into Bob's, then decrypt the transcript's messages with them.
pub fn sender_key_distribution_message(data: &[u8]) {
    let Ok(message) = SenderKeyDistributionMessage::try_from(data) else {
        return;
    };
    assert_eq!(
        message.serialize(),
        data,
        "the kept bytes are not the input"
    );
    let again = SenderKeyDistributionMessage::try_from(message.serialize()).expect("re-parse");
    assert_eq!(
        (
            again.distribution_id(),
            again.chain_id(),
            again.iteration(),
            again.signing_key()
        ),
        (
            message.distribution_id(),
            message.chain_id(),
            message.iteration(),
            message.signing_key()
        )
    );
    let fx = sender_keys_fixture();
    let mut fresh = SenderKeyRecord::new();
    fresh.process_distribution_message(&message);
    let mut bob = fx.bob.clone();
    bob.process_distribution_message(&message);
    for record in [fresh, bob] {
        check_sender_key_record(&record);
        for group_message in &fx.messages {
            check_group_decrypt(&record, group_message, false);
        }
    }
}

/// `SenderKeyRecord`: parse, round trip, decrypt the transcript's messages; if it holds our
/// own chain, what it encrypts decrypts with its distribution message.
pub fn sender_key_record(data: &[u8]) {
    let Ok(record) = SenderKeyRecord::try_from(data) else {
        return;
    };
    check_sender_key_record(&record);
    let fx = sender_keys_fixture();
    for message in &fx.messages {
        check_group_decrypt(&record, message, false);
    }
    let mut sender = record;
    let mut rng = rng();
    let Ok(distribution) = sender.create_distribution_message(fx.distribution_id, &mut rng) else {
        return;
    };
    let mut receiver = SenderKeyRecord::new();
    receiver.process_distribution_message(&distribution);
    match sender.encrypt(fx.distribution_id, b"to the group", &mut rng) {
        Ok(message) => {
            let parsed = SenderKeyMessage::try_from(message.serialize())
                .expect("our own group message parses");
            assert_eq!(parsed.iteration(), distribution.iteration());
            assert_eq!(
                receiver.decrypt(&parsed).as_deref(),
                Ok(&b"to the group"[..])
            );
        }
        Err(e) => assert_eq!(e, GroupEncryptError::ChainExhausted),
    }
}

fn check_sender_key_record(record: &SenderKeyRecord) {
    let bytes = record.serialize();
    let again = SenderKeyRecord::try_from(&bytes[..]).expect("re-parse");
    assert_eq!(again.serialize(), bytes, "round trip is not stable");
}

// ---------------------------------------------------------------------------------------------
// Fingerprints and padding.
// ---------------------------------------------------------------------------------------------

/// The fingerprint transcript the `scannable_fingerprint` target uses.
pub const FINGERPRINT_FIXTURE: &str = "g_fingerprints_base_seed1.json";

/// Alice's safety number with Bob in both versions, and hers with Carol (another key).
struct FingerprintFixture {
    with_bob: Vec<ScannableFingerprint>,
    with_carol: ScannableFingerprint,
}

fn fingerprint_fixture() -> &'static FingerprintFixture {
    static CELL: OnceLock<FingerprintFixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let v = load(FINGERPRINT_FIXTURE);
        let key = |fp: &Value, field: &str| {
            IdentityKey::try_from(&hex_field(fp, field)[..]).expect("identity key")
        };
        let mut with_bob = Vec::new();
        let mut with_carol = None;
        for fp in v["fingerprints"].as_array().expect("fingerprints") {
            let version = u64_field(fp, "version") as u32;
            let (alice_id, bob_id) = (
                hex_field(fp, "alice_stable_id"),
                hex_field(fp, "bob_stable_id"),
            );
            let (alice, bob) = (key(fp, "alice_identity_key"), key(fp, "bob_identity_key"));
            let ours = Fingerprint::new(
                version,
                FINGERPRINT_ITERATIONS,
                &alice_id,
                &alice,
                &bob_id,
                &bob,
            );
            assert_eq!(
                ours.scannable().serialize(),
                hex_field(fp, "scannable_alice")
            );
            with_bob.push(ours.scannable().clone());
            if version == 2 {
                let carol = Fingerprint::new(
                    version,
                    FINGERPRINT_ITERATIONS,
                    &alice_id,
                    &alice,
                    &bob_id,
                    &alice,
                );
                with_carol = Some(carol.scannable().clone());
            }
        }
        FingerprintFixture {
            with_bob,
            with_carol: with_carol.expect("a version 2 fingerprint"),
        }
    })
}

/// `ScannableFingerprint::compare` (the parser of scanned QR codes), as Alice with Bob in both
/// versions: decoding does not depend on the version, at most one version matches, and a
/// code that matches Bob does not match Carol.
pub fn scannable_fingerprint(data: &[u8]) {
    let fx = fingerprint_fixture();
    let results: Vec<_> = fx.with_bob.iter().map(|ours| ours.compare(data)).collect();
    let decode_errors = results
        .iter()
        .filter(|r| matches!(r, Err(FingerprintError::Decode(_))))
        .count();
    assert!(
        decode_errors == 0 || decode_errors == results.len(),
        "decoding depends on the version"
    );
    let not_mismatched = results
        .iter()
        .filter(|r| !matches!(r, Err(FingerprintError::VersionMismatch { .. })))
        .count();
    assert!(
        not_mismatched <= 1 || decode_errors > 0,
        "a code has two versions"
    );
    let matches_bob = results.contains(&Ok(true));
    if matches_bob {
        assert_ne!(
            fx.with_carol.compare(data),
            Ok(true),
            "a code matches two safety numbers"
        );
    }
}

/// `unpad`: it is strict, so what it accepts is exactly what [`pad`] makes of the content
/// (no extra zero block, no other terminator), and any input padded unpads to itself.
pub fn padding_unpad(data: &[u8]) {
    if let Ok(content) = unpad(data) {
        assert_eq!(
            pad(content),
            data,
            "unpad accepted a padding pad does not produce"
        );
    }
    let padded = pad(data);
    assert_eq!(padded.len() % PADDING_BLOCK_SIZE, 0);
    assert!(padded.len() > data.len());
    assert_eq!(unpad(&padded), Ok(data));
}

// ---------------------------------------------------------------------------------------------
// Two parties.
// ---------------------------------------------------------------------------------------------

/// Alice and Bob with a real PQXDH session (set up once from a seeded ChaCha20), exchanging
/// messages over a network the input script controls.
#[derive(Clone)]
struct World {
    rng: ChaCha20Rng,
    bob_keys: std::sync::Arc<DeviceKeys>,
    alice: Party,
    bob: Party,
    flights: Vec<Flight>,
    sends: usize,
}

/// One side's record and our model of its receiving chains.
#[derive(Clone)]
struct Party {
    record: SessionRecord,
    /// The peer ratchet keys it has receiving chains for, oldest first (at most
    /// [`sotto_protocol::MAX_RECEIVER_CHAINS`]).
    chains: VecDeque<PublicKey>,
    /// Every peer ratchet key it ever had a chain for.
    seen: Vec<PublicKey>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FlightState {
    Pending,
    Delivered,
    Dropped,
}

#[derive(Clone)]
struct Flight {
    to_bob: bool,
    /// The message type an envelope carries beside the bytes.
    prekey: bool,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    ratchet_key: PublicKey,
    state: FlightState,
}

impl World {
    fn template() -> &'static World {
        static TEMPLATE: OnceLock<World> = OnceLock::new();
        TEMPLATE.get_or_init(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(0xa11c_eb0b);
            let alice_identity = IdentityKeyPair::generate(&mut rng);
            let identity = IdentityKeyPair::generate(&mut rng);
            let signed =
                SignedPreKeyRecord::generate(SignedPreKeyId::from(7), NOW_MS, &identity, &mut rng);
            let one_time = PreKeyRecord::generate(PreKeyId::from(9), &mut rng);
            let kyber =
                KyberPreKeyRecord::generate(KyberPreKeyId::from(11), NOW_MS, &identity, &mut rng);
            let bundle = PreKeyBundle::new(
                2,
                1,
                *identity.identity_key(),
                Some((one_time.id(), *one_time.public_key())),
                (signed.id(), *signed.public_key(), *signed.signature()),
                Some((kyber.id(), kyber.public_key().clone(), *kyber.signature())),
            );
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
                .expect("PQXDH setup");
            assert_eq!(alice.session_version(), Some(4));
            World {
                rng,
                alice: Party {
                    record: alice,
                    // Alice's initial state has a receiving chain for Bob's signed prekey.
                    chains: VecDeque::from([*signed.public_key()]),
                    seen: vec![*signed.public_key()],
                },
                bob: Party {
                    record: SessionRecord::new(),
                    chains: VecDeque::new(),
                    seen: Vec::new(),
                },
                bob_keys: std::sync::Arc::new(DeviceKeys {
                    identity,
                    registration_id: 2,
                    signed,
                    one_time: Some(one_time),
                    kyber: Some(kyber),
                }),
                flights: Vec::new(),
                sends: 0,
            }
        })
    }

    fn party(&mut self, bob: bool) -> &mut Party {
        if bob {
            &mut self.bob
        } else {
            &mut self.alice
        }
    }

    /// Encrypts a new message; returns its flight index.
    fn send(&mut self, from_alice: bool, len: usize) -> Option<usize> {
        if self.sends >= MAX_SCRIPT_SENDS {
            return None;
        }
        let number = self.flights.len();
        let party = self.party(!from_alice);
        if !party.record.has_current_session() {
            return None;
        }
        let mut plaintext = format!("m{number} ").into_bytes();
        plaintext.extend((0..len).map(|i| i as u8));
        let message = party
            .record
            .encrypt(&plaintext, NOW_MS)
            .expect("an established session encrypts");
        check_sent(&message);
        let (prekey, ratchet_key) = match &message {
            CiphertextMessage::Whisper(m) => (false, *m.ratchet_key()),
            CiphertextMessage::PreKey(m) => (true, *m.message().ratchet_key()),
        };
        assert!(
            from_alice || !prekey,
            "the responder never sends PreKey messages"
        );
        self.sends += 1;
        self.flights.push(Flight {
            to_bob: from_alice,
            prekey,
            bytes: message.serialize().to_vec(),
            plaintext,
            ratchet_key,
            state: FlightState::Pending,
        });
        Some(number)
    }

    /// Hands `bytes` (flight `i`'s envelope) to the receiver.
    fn receive(&mut self, i: usize, bytes: &[u8]) -> Delivery {
        let (to_bob, prekey) = (self.flights[i].to_bob, self.flights[i].prekey);
        let keys = std::sync::Arc::clone(&self.bob_keys);
        let mut rng = self.rng.clone();
        let record = &mut self.party(to_bob).record;
        let result = deliver(record, &keys, prekey, bytes, &mut rng);
        self.rng = rng;
        result
    }

    /// What delivering `bytes` would do, without doing it: (result, record afterwards).
    fn dry_run(&self, i: usize, bytes: &[u8]) -> (Delivery, Vec<u8>) {
        let mut world = self.clone();
        let result = world.receive(i, bytes);
        (
            result,
            world
                .party(self.flights[i].to_bob)
                .record
                .to_libsignal_bytes(),
        )
    }

    fn record_bytes(&mut self, bob: bool) -> Vec<u8> {
        self.party(bob).record.to_libsignal_bytes()
    }

    /// Whether the receiver of flight `i` still has (or can still create) its chain.
    fn chain_alive(&mut self, i: usize) -> bool {
        let key = self.flights[i].ratchet_key;
        let party = self.party(self.flights[i].to_bob);
        party.chains.contains(&key) || !party.seen.contains(&key)
    }

    /// Updates the chain model after flight `i` was accepted.
    fn accepted(&mut self, i: usize) {
        let key = self.flights[i].ratchet_key;
        self.flights[i].state = FlightState::Delivered;
        let party = self.party(self.flights[i].to_bob);
        if !party.chains.contains(&key) {
            party.chains.push_back(key);
            party.seen.push(key);
            if party.chains.len() > sotto_protocol::MAX_RECEIVER_CHAINS {
                party.chains.pop_front();
            }
        }
    }

    /// Delivers flight `i` intact (it is pending): it decrypts to its plaintext unless its
    /// receiving chain was dropped, in which case it is rejected without effect.
    fn deliver_intact(&mut self, i: usize) {
        let to_bob = self.flights[i].to_bob;
        let alive = self.chain_alive(i);
        let had_session = self.party(to_bob).record.has_current_session();
        let before = self.record_bytes(to_bob);
        let bytes = self.flights[i].bytes.clone();
        match self.receive(i, &bytes) {
            Ok((plaintext, used)) => {
                assert!(alive, "flight {i} decrypted although its chain was dropped");
                assert_eq!(
                    plaintext, self.flights[i].plaintext,
                    "flight {i} decrypted to something else"
                );
                assert_eq!(
                    used.is_some(),
                    !had_session,
                    "flight {i}: a session was started iff there was none"
                );
                self.accepted(i);
            }
            Err(e) => {
                assert!(!alive, "flight {i} delivered intact was rejected: {e}");
                assert_eq!(
                    self.record_bytes(to_bob),
                    before,
                    "a rejected message changed the record"
                );
                self.flights[i].state = FlightState::Dropped;
            }
        }
    }

    /// Delivers flight `i` again (it was delivered): a duplicate while its chain lives,
    /// rejected anyway; the record never changes.
    fn redeliver(&mut self, i: usize) {
        let to_bob = self.flights[i].to_bob;
        let alive = self.chain_alive(i);
        let before = self.record_bytes(to_bob);
        let bytes = self.flights[i].bytes.clone();
        let result = self.receive(i, &bytes);
        if alive {
            assert!(
                result.as_ref().is_err_and(|e| e.starts_with("Duplicate")),
                "redelivery of flight {i} gave {result:?}"
            );
        } else {
            assert!(
                result.is_err(),
                "redelivery of flight {i} (chain dropped) was accepted"
            );
        }
        assert_eq!(
            self.record_bytes(to_bob),
            before,
            "a redelivery changed the record"
        );
    }

    /// Delivers flight `i` with bit `bit` flipped.
    fn tamper(&mut self, i: usize, bit: usize) {
        let to_bob = self.flights[i].to_bob;
        let original = self.flights[i].bytes.clone();
        let mut bytes = original.clone();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let before = self.record_bytes(to_bob);
        let (original_result, original_after) = self.dry_run(i, &original);
        match self.receive(i, &bytes) {
            Err(_) => assert_eq!(
                self.record_bytes(to_bob),
                before,
                "a rejected tampered message changed the record"
            ),
            Ok(result) => {
                // Accepted only where libsignal's format leaves a PreKey message's setup
                // parameters unauthenticated (ignored once the session exists; the
                // registration id is never covered): the effect must be the original's.
                assert!(
                    self.flights[i].prekey && same_authenticated_content(&original, &bytes),
                    "flipping bit {bit} of flight {i} was accepted"
                );
                assert_eq!(
                    Ok(result),
                    original_result,
                    "a tampered message did something else"
                );
                if !only_registration_id_differs(&original, &bytes) {
                    assert_eq!(self.record_bytes(to_bob), original_after);
                }
                assert_eq!(
                    self.flights[i].state,
                    FlightState::Pending,
                    "a consumed message was accepted again"
                );
                self.accepted(i);
            }
        }
    }

    fn pick(&self, state: FlightState, pick: u8) -> Option<usize> {
        let indices: Vec<usize> = (0..self.flights.len())
            .filter(|&i| self.flights[i].state == state)
            .collect();
        (!indices.is_empty()).then(|| indices[usize::from(pick) % indices.len()])
    }
}

/// A delivery's outcome: the plaintext and the prekeys a new session used, or the error.
type Delivery = Result<(Vec<u8>, Option<UsedPreKeys>), String>;

fn deliver(
    record: &mut SessionRecord,
    keys: &DeviceKeys,
    prekey: bool,
    bytes: &[u8],
    rng: &mut ChaCha20Rng,
) -> Delivery {
    if prekey {
        let message = PreKeySignalMessage::try_from(bytes).map_err(|e| e.to_string())?;
        return record
            .decrypt_prekey(&message, &keys.secrets(), rng)
            .map(|d| (d.plaintext, d.used_pre_keys))
            .map_err(|e| format!("{e:?}"));
    }
    let message = SignalMessage::try_from(bytes).map_err(|e| e.to_string())?;
    record
        .decrypt(&message, rng)
        .map(|p| (p, None))
        .map_err(|e| format!("{e:?}"))
}

/// Whether `tampered` is a PreKey message with the same version, base key and (MAC-covered)
/// inner message as `original`: the only kind of tampering a receiver may accept, because
/// libsignal's format does not authenticate a PreKey message's other setup parameters once the
/// session exists.
pub fn same_authenticated_content(original: &[u8], tampered: &[u8]) -> bool {
    let (Ok(a), Ok(b)) = (
        PreKeySignalMessage::try_from(original),
        PreKeySignalMessage::try_from(tampered),
    ) else {
        return false;
    };
    a.message_version() == b.message_version()
        && a.base_key() == b.base_key()
        && a.message().serialize() == b.message().serialize()
}

/// Whether `tampered` is a PreKey message equal to `original` in everything but the
/// registration id.
pub fn only_registration_id_differs(original: &[u8], tampered: &[u8]) -> bool {
    let (Ok(a), Ok(b)) = (
        PreKeySignalMessage::try_from(original),
        PreKeySignalMessage::try_from(tampered),
    ) else {
        return false;
    };
    a.registration_id() != b.registration_id()
        && a.message_version() == b.message_version()
        && a.pre_key_id() == b.pre_key_id()
        && a.signed_pre_key_id() == b.signed_pre_key_id()
        && a.kyber_pre_key_id() == b.kyber_pre_key_id()
        && a.base_key() == b.base_key()
        && a.identity_key() == b.identity_key()
        && a.message().serialize() == b.message().serialize()
}

/// Two parties: the input is a script, one opcode byte (taken mod 8) followed by its operand
/// bytes (missing operands read as 0):
///
/// | op | operands | action |
/// |---|---|---|
/// | 0 / 1 | `len` | Alice / Bob encrypts a message of `len` + a few bytes |
/// | 2 | | deliver the oldest pending message (in order) |
/// | 3 | `pick` | deliver a chosen pending message (out of order) |
/// | 4 | `pick` | deliver a chosen delivered message again |
/// | 5 | `pick` | drop a chosen pending message for good |
/// | 6 | `pick`, `bit` (u16 LE) | deliver a chosen message with one bit flipped |
/// | 7 | | deliver the newest pending message |
///
/// Invariants: every message delivered intact decrypts exactly once to its plaintext (unless
/// the receiver has since dropped its receiving chain, and then it is rejected); a redelivery
/// is `DecryptError::Duplicate`; a tampered message is rejected and leaves the record unchanged
/// (or, for the unauthenticated parts of a PreKey message, has exactly the original's effect);
/// afterwards everything pending is delivered and the session still works both ways.
pub fn two_party(data: &[u8]) {
    let mut w = World::template().clone();
    let mut script = data.iter().copied();
    while let Some(op) = script.next() {
        let mut operand = || script.next().unwrap_or(0);
        match op % 8 {
            0 | 1 => {
                let len = usize::from(operand());
                w.send(op % 8 == 0, len);
            }
            2 => {
                if let Some(i) = w.pick(FlightState::Pending, 0) {
                    w.deliver_intact(i);
                }
            }
            3 => {
                if let Some(i) = w.pick(FlightState::Pending, operand()) {
                    w.deliver_intact(i);
                }
            }
            4 => {
                if let Some(i) = w.pick(FlightState::Delivered, operand()) {
                    w.redeliver(i);
                }
            }
            5 => {
                if let Some(i) = w.pick(FlightState::Pending, operand()) {
                    w.flights[i].state = FlightState::Dropped;
                }
            }
            6 => {
                let pick = operand();
                let bit = u16::from_le_bytes([operand(), operand()]);
                let live: Vec<usize> = (0..w.flights.len())
                    .filter(|&i| w.flights[i].state != FlightState::Dropped)
                    .collect();
                if !live.is_empty() {
                    w.tamper(live[usize::from(pick) % live.len()], usize::from(bit));
                }
            }
            _ => {
                let pending = w
                    .flights
                    .iter()
                    .rposition(|f| f.state == FlightState::Pending);
                if let Some(i) = pending {
                    w.deliver_intact(i);
                }
            }
        }
    }

    // Everything still pending arrives, in order; then the session works both ways.
    while let Some(i) = w.pick(FlightState::Pending, 0) {
        w.deliver_intact(i);
    }
    let before_final = w.sends;
    w.sends = 0;
    for from_alice in [true, false] {
        let i = w.send(from_alice, 3).expect("the session keeps working");
        w.deliver_intact(i);
        assert_eq!(
            w.flights[i].state,
            FlightState::Delivered,
            "a fresh message was not delivered"
        );
        w.redeliver(i);
    }
    w.sends = before_final;
    assert!(w.bob.record.has_current_session());
}
