//! Sealed sender against the libsignal v0.74.1 transcripts `f_sealed_sender_*`: certificates,
//! v1 (`0x11`) and v2 (SentMessage `0x23`, ReceivedMessage `0x22`) reproduced byte for byte
//! from the recorded draws, opened back to the recorded USMC, and mangled copies rejected.
//!
//! The inner 1:1 message (`usmc.content`) is only compared with the recorded bytes here; its
//! Double Ratchet decryption belongs to the session tests. The HKDF outputs of the v1 and v2
//! key schedules are checked against `derived` by the unit tests of `sealed_sender::v1`/`v2`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use sotto_protocol::{
    sealed_sender_decrypt, sealed_sender_decrypt_to_usmc, sealed_sender_encrypt_v1,
    sealed_sender_encrypt_v2, CertificateError, CertifiedSender, ContentHint, DeviceId,
    IdentityKey, IdentityKeyPair, KeyPair, PrivateKey, SealedContentType, SealedSenderError,
    SealedSenderV2Recipient, SealedSenderV2SentMessage, SenderCertificate, ServerCertificate,
    ServiceId, UnidentifiedSenderMessageContent, REVOKED_SERVER_CERTIFICATE_KEY_IDS,
};
use sotto_test_support::vectors::{hex_array, hex_field, load_scenario, u64_field};
use sotto_test_support::ReplayRng;

/// Both transcripts; a missing file panics in `load_scenario`.
fn transcripts() -> Vec<(String, Value)> {
    let files = load_scenario("f_sealed_sender_");
    assert_eq!(files.len(), 2, "expected both f_sealed_sender transcripts");
    files
}

fn key_pair(value: &Value) -> KeyPair {
    let pair = KeyPair::from_private(PrivateKey::from_bytes(hex_array(value, "private")));
    assert_eq!(
        pair.public_key.serialize().to_vec(),
        hex_field(value, "public")
    );
    pair
}

fn identity(party: &Value) -> IdentityKeyPair {
    let pair =
        IdentityKeyPair::from_private(PrivateKey::from_bytes(hex_array(party, "identity_private")));
    assert_eq!(
        pair.identity_key().serialize().to_vec(),
        hex_field(party, "identity_public")
    );
    pair
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} is not a string in {value}"))
}

/// Everything a test needs from one transcript.
struct Fixture {
    name: String,
    v: Value,
    trust_root: KeyPair,
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    sender_certificate: SenderCertificate,
    validation_time_ms: u64,
}

fn fixtures() -> Vec<Fixture> {
    transcripts()
        .into_iter()
        .map(|(name, v)| {
            let certs = &v["certificates"];
            let sender_certificate = SenderCertificate::try_from(
                hex_field(&certs["sender_certificate"], "serialized").as_slice(),
            )
            .unwrap();
            Fixture {
                trust_root: key_pair(&certs["trust_root"]),
                alice: identity(&v["alice"]),
                bob: identity(&v["bob"]),
                sender_certificate,
                validation_time_ms: u64_field(&v, "validation_time_ms"),
                name,
                v,
            }
        })
        .collect()
}

#[test]
fn certificates_are_reproduced_from_the_recorded_draws() {
    for (name, v) in transcripts() {
        let certs = &v["certificates"];
        let trust_root = key_pair(&certs["trust_root"]);
        let server_key = key_pair(&certs["server_key"]);
        let server = &certs["server_certificate"];
        let sender = &certs["sender_certificate"];

        let mut rng = ReplayRng::new(
            format!("{name} server certificate"),
            &[&server["rng_draws"]],
        );
        let server_cert = ServerCertificate::new(
            u64_field(server, "key_id") as u32,
            server_key.public_key,
            &trust_root.private_key,
            &mut rng,
        );
        rng.assert_exhausted();
        assert_eq!(
            server_cert.certificate(),
            hex_field(server, "certificate"),
            "{name}"
        );
        assert_eq!(
            server_cert.signature(),
            hex_field(server, "signature"),
            "{name}"
        );
        assert_eq!(
            server_cert.serialized(),
            hex_field(server, "serialized"),
            "{name}"
        );

        let identity_key =
            IdentityKey::try_from(hex_field(sender, "identity_key").as_slice()).unwrap();
        assert_eq!(
            identity_key.serialize().to_vec(),
            hex_field(&v["alice"], "identity_public"),
            "{name}: the certificate is Alice's"
        );
        let mut rng = ReplayRng::new(
            format!("{name} sender certificate"),
            &[&sender["rng_draws"]],
        );
        let sender_cert = SenderCertificate::new(
            CertifiedSender {
                uuid: str_field(sender, "sender_uuid").to_owned(),
                e164: sender["sender_e164"].as_str().map(str::to_owned),
                device_id: DeviceId::from(u64_field(sender, "sender_device") as u32),
                identity_key,
                expiration_ms: u64_field(sender, "expiration_ms"),
            },
            server_cert,
            &server_key.private_key,
            &mut rng,
        );
        rng.assert_exhausted();
        assert_eq!(
            sender_cert.certificate(),
            hex_field(sender, "certificate"),
            "{name}"
        );
        assert_eq!(
            sender_cert.signature(),
            hex_field(sender, "signature"),
            "{name}"
        );
        assert_eq!(
            sender_cert.serialized(),
            hex_field(sender, "serialized"),
            "{name}"
        );
    }
}

#[test]
fn recorded_certificates_parse_and_validate() {
    for f in fixtures() {
        let (name, certs) = (&f.name, &f.v["certificates"]);
        let sender = &certs["sender_certificate"];
        let server = &certs["server_certificate"];
        let cert = &f.sender_certificate;

        assert_eq!(
            cert.sender_uuid(),
            str_field(sender, "sender_uuid"),
            "{name}"
        );
        assert_eq!(cert.sender_e164(), sender["sender_e164"].as_str(), "{name}");
        assert_eq!(
            cert.sender_aci()
                .map(|id| id.service_id_string())
                .as_deref(),
            Some(str_field(&f.v["alice"]["address"], "name")),
            "{name}"
        );
        assert_eq!(
            u32::from(cert.sender_device_id()) as u64,
            u64_field(sender, "sender_device")
        );
        assert_eq!(
            cert.expiration_ms(),
            u64_field(sender, "expiration_ms"),
            "{name}"
        );
        assert_eq!(cert.key(), f.alice.identity_key(), "{name}");
        assert_eq!(
            cert.certificate(),
            hex_field(sender, "certificate"),
            "{name}"
        );
        assert_eq!(cert.signature(), hex_field(sender, "signature"), "{name}");
        assert_eq!(cert.serialized(), hex_field(sender, "serialized"), "{name}");
        assert_eq!(
            cert.signer().key_id() as u64,
            u64_field(server, "key_id"),
            "{name}"
        );
        assert_eq!(
            cert.signer().public_key().serialize().to_vec(),
            hex_field(&certs["server_key"], "public"),
            "{name}"
        );
        assert_eq!(
            cert.signer().serialized(),
            hex_field(server, "serialized"),
            "{name}"
        );

        let server_cert =
            ServerCertificate::try_from(hex_field(server, "serialized").as_slice()).unwrap();
        assert_eq!(
            server_cert.validate(&f.trust_root.public_key),
            Ok(()),
            "{name}"
        );

        let root = &f.trust_root.public_key;
        assert_eq!(cert.validate(root, f.validation_time_ms), Ok(()), "{name}");
        assert_eq!(cert.validate(root, cert.expiration_ms()), Ok(()), "{name}");
        assert_eq!(
            cert.validate(root, cert.expiration_ms() + 1),
            Err(CertificateError::Expired {
                expiration_ms: cert.expiration_ms(),
                now_ms: cert.expiration_ms() + 1,
            }),
            "{name}"
        );
        let other_root = *f.bob.identity_key().public_key();
        assert_eq!(
            cert.validate(&other_root, f.validation_time_ms),
            Err(CertificateError::BadServerSignature),
            "{name}"
        );
    }
}

/// Every single-bit change of the recorded certificates is refused, at parse or validation.
#[test]
fn flipped_certificate_bits_are_rejected() {
    for f in fixtures() {
        let certs = &f.v["certificates"];
        let root = &f.trust_root.public_key;
        let sender = hex_field(&certs["sender_certificate"], "serialized");
        for bit in 0..sender.len() * 8 {
            let mut bad = sender.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(cert) = SenderCertificate::try_from(bad.as_slice()) {
                assert!(
                    cert.validate(root, f.validation_time_ms).is_err(),
                    "{}: sender certificate bit {bit}",
                    f.name
                );
            }
        }
        let server = hex_field(&certs["server_certificate"], "serialized");
        for bit in 0..server.len() * 8 {
            let mut bad = server.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(cert) = ServerCertificate::try_from(bad.as_slice()) {
                assert!(
                    cert.validate(root).is_err(),
                    "{}: server certificate bit {bit}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn revoked_server_key_id_is_refused() {
    for f in fixtures() {
        let certs = &f.v["certificates"];
        let server_key = key_pair(&certs["server_key"]);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let revoked = ServerCertificate::new(
            REVOKED_SERVER_CERTIFICATE_KEY_IDS[0],
            server_key.public_key,
            &f.trust_root.private_key,
            &mut rng,
        );
        assert_eq!(
            revoked.validate(&f.trust_root.public_key),
            Err(CertificateError::Revoked {
                key_id: 0xDEAD_C357
            })
        );
        let cert = SenderCertificate::new(
            CertifiedSender {
                uuid: f.sender_certificate.sender_uuid().to_owned(),
                e164: None,
                device_id: f.sender_certificate.sender_device_id(),
                identity_key: *f.alice.identity_key(),
                expiration_ms: f.sender_certificate.expiration_ms(),
            },
            revoked,
            &server_key.private_key,
            &mut rng,
        );
        assert_eq!(
            cert.validate(&f.trust_root.public_key, f.validation_time_ms),
            Err(CertificateError::Revoked {
                key_id: 0xDEAD_C357
            }),
            "{}",
            f.name
        );

        // And through the recipient's API.
        let usmc = UnidentifiedSenderMessageContent::new(
            SealedContentType::Whisper,
            cert,
            b"x".to_vec(),
            ContentHint::Default,
            None,
        );
        let sealed =
            sealed_sender_encrypt_v1(f.bob.identity_key(), &f.alice, &usmc, &mut rng).unwrap();
        assert!(sealed_sender_decrypt_to_usmc(&f.bob, &sealed).is_ok());
        assert_eq!(
            sealed_sender_decrypt(
                &f.bob,
                &sealed,
                &f.trust_root.public_key,
                f.validation_time_ms
            )
            .err(),
            Some(SealedSenderError::Certificate(CertificateError::Revoked {
                key_id: 0xDEAD_C357
            })),
            "{}",
            f.name
        );
    }
}

fn hint(step: &Value) -> ContentHint {
    let text = str_field(&step["usmc"], "content_hint");
    match text.split_whitespace().next() {
        Some("Default") => ContentHint::Default,
        Some("Resendable") => ContentHint::Resendable,
        Some("Implicit") => ContentHint::Implicit,
        _ => panic!("unknown content hint {text}"),
    }
}

fn content_type(step: &Value) -> SealedContentType {
    match str_field(&step["usmc"], "type") {
        "PreKey" => SealedContentType::PreKey,
        "Whisper" => SealedContentType::Whisper,
        other => panic!("unexpected usmc type {other}"),
    }
}

/// Rebuilds the USMC of a step and checks it against the recorded bytes.
fn usmc_of(f: &Fixture, step: &Value) -> UnidentifiedSenderMessageContent {
    assert!(step["usmc"]["group_id"].is_null() || step["usmc"]["group_id"] == "None");
    let usmc = UnidentifiedSenderMessageContent::new(
        content_type(step),
        f.sender_certificate.clone(),
        hex_field(&step["inner_message"], "serialized"),
        hint(step),
        None,
    );
    assert_eq!(
        usmc.serialized(),
        hex_field(&step["usmc"], "serialized"),
        "{}",
        f.name
    );
    usmc
}

/// What Bob gets from opening a step's sealed message: the recorded USMC and sender.
fn check_opened(f: &Fixture, step: &Value, opened: &UnidentifiedSenderMessageContent) {
    let name = &f.name;
    assert_eq!(
        opened.serialized(),
        hex_field(&step["usmc"], "serialized"),
        "{name}"
    );
    assert_eq!(opened.msg_type(), content_type(step), "{name}");
    assert_eq!(opened.content_hint(), hint(step), "{name}");
    assert_eq!(opened.group_id(), None, "{name}");
    // The lead's session tests decrypt this inner message; here it must be the recorded one.
    assert_eq!(
        opened.content(),
        hex_field(&step["inner_message"], "serialized"),
        "{name}"
    );
    let decrypted = &step["decrypted"];
    let sender = opened.sender();
    assert_eq!(
        sender.sender_uuid(),
        str_field(decrypted, "sender_uuid"),
        "{name}"
    );
    assert_eq!(
        sender.sender_e164(),
        decrypted["sender_e164"].as_str(),
        "{name}"
    );
    assert_eq!(
        u64::from(u32::from(sender.sender_device_id())),
        u64_field(decrypted, "device_id"),
        "{name}"
    );
    assert_eq!(sender.key(), f.alice.identity_key(), "{name}");
    assert_eq!(
        sender.validate(&f.trust_root.public_key, f.validation_time_ms),
        Ok(()),
        "{name}"
    );
}

fn v1_step(f: &Fixture) -> &Value {
    let step = &f.v["steps"][0];
    assert_eq!(step["event"], "sealed_sender_v1", "{}", f.name);
    step
}

fn v2_step(f: &Fixture) -> &Value {
    let step = &f.v["steps"][2];
    assert_eq!(
        step["event"], "sealed_sender_v2_single_recipient",
        "{}",
        f.name
    );
    step
}

#[test]
fn v1_seal_reproduces_the_recorded_message() {
    for f in fixtures() {
        let step = v1_step(&f);
        let name = &f.name;
        let usmc = usmc_of(&f, step);
        let sealed = &step["sealed"];

        let mut rng = ReplayRng::new(format!("{name} seal v1"), &[&step["encrypt_rng_draws"]]);
        let bytes =
            sealed_sender_encrypt_v1(f.bob.identity_key(), &f.alice, &usmc, &mut rng).unwrap();
        rng.assert_exhausted();
        assert_eq!(bytes, hex_field(sealed, "serialized"), "{name}");
        assert_eq!(bytes[0], 0x11, "{name}");
        assert_eq!(bytes[1..], hex_field(sealed, "protobuf"), "{name}");

        // The recorded ephemeral key and the agreements the key schedule starts from.
        let ephemeral = PrivateKey::from_bytes(hex_array(step, "ephemeral_private"));
        let e_pub = ephemeral.public_key().serialize();
        assert_eq!(
            e_pub.to_vec(),
            hex_field(sealed, "ephemeral_public"),
            "{name}"
        );
        let derived = &step["derived"];
        let bob_public = f.bob.identity_key().public_key();
        assert_eq!(
            ephemeral.agree(bob_public).unwrap().to_vec(),
            hex_field(derived, "ephemeral_dh"),
            "{name}"
        );
        assert_eq!(
            f.bob
                .private_key()
                .agree(&ephemeral.public_key())
                .unwrap()
                .to_vec(),
            hex_field(derived, "ephemeral_dh"),
            "{name}"
        );
        assert_eq!(
            [
                &b"UnidentifiedDelivery"[..],
                &bob_public.serialize(),
                &e_pub
            ]
            .concat(),
            hex_field(derived, "ephemeral_salt"),
            "{name}"
        );
        assert_eq!(
            f.alice.private_key().agree(bob_public).unwrap().to_vec(),
            hex_field(derived, "static_dh"),
            "{name}"
        );
        let static_salt = hex_field(derived, "static_salt");
        assert_eq!(
            static_salt,
            [
                hex_field(derived, "e_chain_key"),
                hex_field(sealed, "encrypted_static")
            ]
            .concat(),
            "{name}"
        );
        // Protobuf field order 1, 2, 3 as prost writes it.
        let encrypted_static = hex_field(sealed, "encrypted_static");
        let encrypted_message = hex_field(sealed, "encrypted_message");
        assert_eq!(encrypted_static.len(), 33 + 10, "{name}");
        assert_eq!(
            encrypted_message.len(),
            usmc.serialized().len() + 10,
            "{name}"
        );
    }
}

#[test]
fn v1_open_gives_the_recorded_usmc() {
    for f in fixtures() {
        let step = v1_step(&f);
        let sealed = hex_field(&step["sealed"], "serialized");
        let opened = sealed_sender_decrypt_to_usmc(&f.bob, &sealed).unwrap();
        check_opened(&f, step, &opened);
        let validated = sealed_sender_decrypt(
            &f.bob,
            &sealed,
            &f.trust_root.public_key,
            f.validation_time_ms,
        )
        .unwrap();
        assert_eq!(validated.serialized(), opened.serialized());
        let expired = f.sender_certificate.expiration_ms() + 1;
        assert!(matches!(
            sealed_sender_decrypt(&f.bob, &sealed, &f.trust_root.public_key, expired),
            Err(SealedSenderError::Certificate(
                CertificateError::Expired { .. }
            ))
        ));
    }
}

#[test]
fn v2_sent_message_is_reproduced_and_split() {
    for f in fixtures() {
        let step = v2_step(&f);
        let name = &f.name;
        let usmc = usmc_of(&f, step);
        let sent_json = &step["sent_message"];
        let received_json = &step["received_message"];

        let fixed = hex_field(sent_json, "recipient_service_id_fixed_width");
        let service_id = ServiceId::try_from(fixed.as_slice()).unwrap();
        assert_eq!(
            Some(service_id),
            ServiceId::parse_service_id_string(str_field(sent_json, "recipient_service_id")),
            "{name}"
        );
        assert_eq!(
            service_id.service_id_string(),
            str_field(&f.v["bob"]["address"], "name"),
            "{name}"
        );
        assert_eq!(service_id.to_fixed_width_binary().to_vec(), fixed, "{name}");
        assert!(
            sent_json["excluded_recipients"]
                .as_array()
                .is_some_and(Vec::is_empty),
            "{name}"
        );
        let devices: Vec<(DeviceId, u32)> = sent_json["recipient_devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    DeviceId::from(u64_field(d, "device_id") as u32),
                    u64_field(d, "registration_id") as u32,
                )
            })
            .collect();

        let mut rng = ReplayRng::new(format!("{name} seal v2"), &[&step["encrypt_rng_draws"]]);
        let recipients = [SealedSenderV2Recipient {
            service_id,
            devices: &devices,
            identity_key: f.bob.identity_key(),
        }];
        let sent = sealed_sender_encrypt_v2(&recipients, &f.alice, &usmc, &mut rng).unwrap();
        rng.assert_exhausted();
        assert_eq!(sent, hex_field(sent_json, "serialized"), "{name}");
        let shared = hex_field(sent_json, "shared_bytes_e_pub_and_ciphertext");
        assert!(sent.ends_with(&shared), "{name}");
        assert_eq!(
            shared[..32],
            hex_field(&step["derived"], "e_public"),
            "{name}"
        );
        // AES-GCM-SIV appends a 16-byte tag to the USMC.
        assert_eq!(shared.len(), 32 + usmc.serialized().len() + 16, "{name}");

        let parsed = SealedSenderV2SentMessage::parse(&sent).unwrap();
        assert_eq!(parsed.version(), 0x23, "{name}");
        assert_eq!(parsed.recipients().len(), 1, "{name}");
        assert_eq!(parsed.recipients()[0].service_id(), service_id, "{name}");
        assert_eq!(
            parsed.recipients()[0].devices(),
            devices.as_slice(),
            "{name}"
        );
        assert_eq!(parsed.recipient_index(&service_id), Some(0), "{name}");
        let received = parsed.received_message_for(0).unwrap();
        assert_eq!(received, hex_field(received_json, "serialized"), "{name}");
        assert_eq!(received[0], 0x22, "{name}");
        assert_eq!(
            received[1..49],
            hex_field(received_json, "c_and_at"),
            "{name}"
        );
        assert_eq!(received[49..], shared, "{name}");
        assert_eq!(parsed.received_message_for(1), None, "{name}");
    }
}

#[test]
fn v2_open_gives_the_recorded_usmc() {
    for f in fixtures() {
        let step = v2_step(&f);
        let received = hex_field(&step["received_message"], "serialized");
        let opened = sealed_sender_decrypt_to_usmc(&f.bob, &received).unwrap();
        check_opened(&f, step, &opened);
        assert!(sealed_sender_decrypt(
            &f.bob,
            &received,
            &f.trust_root.public_key,
            f.validation_time_ms
        )
        .is_ok());
    }
}

#[test]
fn wrong_recipient_identity_cannot_open() {
    for f in fixtures() {
        let v1 = hex_field(&v1_step(&f)["sealed"], "serialized");
        let v2 = hex_field(&v2_step(&f)["received_message"], "serialized");
        let stranger = IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(99));
        for who in [&f.alice, &stranger] {
            assert_eq!(
                sealed_sender_decrypt_to_usmc(who, &v1).err(),
                Some(SealedSenderError::Authentication),
                "{}",
                f.name
            );
            assert_eq!(
                sealed_sender_decrypt_to_usmc(who, &v2).err(),
                Some(SealedSenderError::Authentication),
                "{}",
                f.name
            );
        }
    }
}

/// Truncated, extended and bit-flipped copies of the recorded messages never sealed_sender_decrypt_to_usmc (and never
/// panic). The low nibble of the version byte is not checked, as in libsignal, so the version
/// byte is mangled in its high nibble.
#[test]
fn mangled_sealed_messages_are_rejected() {
    for f in fixtures() {
        let v1 = hex_field(&v1_step(&f)["sealed"], "serialized");
        let v2 = hex_field(&v2_step(&f)["received_message"], "serialized");
        for sealed in [&v1, &v2] {
            for len in 0..sealed.len() {
                assert!(
                    sealed_sender_decrypt_to_usmc(&f.bob, &sealed[..len]).is_err(),
                    "{}: truncated to {len}",
                    f.name
                );
            }
            for extra in [&[0u8][..], &[0x0a, 0x00], &[0xff; 16]] {
                let longer = [sealed.as_slice(), extra].concat();
                assert!(
                    sealed_sender_decrypt_to_usmc(&f.bob, &longer).is_err(),
                    "{}: trailing {extra:02x?}",
                    f.name
                );
            }
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= if i == 0 { 0x40 } else { 1 << (i % 8) };
                assert!(
                    sealed_sender_decrypt_to_usmc(&f.bob, &bad).is_err(),
                    "{}: byte {i} flipped",
                    f.name
                );
            }
        }
        // Flips that hit a MAC or AEAD tag report the single authentication failure.
        let mut bad_mac = v1.clone();
        *bad_mac.last_mut().unwrap() ^= 1;
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&f.bob, &bad_mac).err(),
            Some(SealedSenderError::Authentication)
        );
        let mut bad_tag = v2.clone();
        *bad_tag.last_mut().unwrap() ^= 1;
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&f.bob, &bad_tag).err(),
            Some(SealedSenderError::Authentication)
        );
        let mut bad_at = v2.clone();
        bad_at[1 + 32] ^= 1;
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&f.bob, &bad_at).err(),
            Some(SealedSenderError::IdentityMismatch)
        );
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&f.bob, &[&[0x31][..], &v1[1..]].concat()).err(),
            Some(SealedSenderError::UnknownVersion(3))
        );
    }
}

/// Truncations of the recorded SentMessage up to the ephemeral key fail to parse.
#[test]
fn truncated_sent_message_is_rejected() {
    for f in fixtures() {
        let sent = hex_field(&v2_step(&f)["sent_message"], "serialized");
        let shared = hex_field(
            &v2_step(&f)["sent_message"],
            "shared_bytes_e_pub_and_ciphertext",
        );
        let header = sent.len() - shared.len();
        for len in 0..header + 32 {
            assert!(
                SealedSenderV2SentMessage::parse(&sent[..len]).is_err(),
                "{}: {len}",
                f.name
            );
        }
        let mut wrong_version = sent.clone();
        wrong_version[0] = 0x24;
        assert!(SealedSenderV2SentMessage::parse(&wrong_version).is_err());
    }
}

/// A v2 message sealed with a different sender identity than the certified one.
#[test]
fn v2_with_uncertified_sender_key_is_an_identity_mismatch() {
    for f in fixtures() {
        let step = v2_step(&f);
        let usmc = usmc_of(&f, step);
        let mallory = IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(5));
        let recipients = [SealedSenderV2Recipient {
            service_id: ServiceId::Aci([7; 16]),
            devices: &[(DeviceId::from(1), 1)],
            identity_key: f.bob.identity_key(),
        }];
        let sent = sealed_sender_encrypt_v2(
            &recipients,
            &mallory,
            &usmc,
            &mut ChaCha20Rng::seed_from_u64(6),
        )
        .unwrap();
        let received = SealedSenderV2SentMessage::parse(&sent)
            .unwrap()
            .received_message_for(0)
            .unwrap();
        assert_eq!(
            sealed_sender_decrypt_to_usmc(&f.bob, &received).err(),
            Some(SealedSenderError::IdentityMismatch)
        );
    }
}

/// The whole transcript through both layers: Alice's PQXDH session from the bundle, each inner
/// message encrypted to the recorded bytes, sealed, opened by Bob, the sender certificate
/// validated, and the inner message decrypted with the recorded draws, every session record
/// equal to libsignal's.
#[test]
fn inner_sessions_decrypt_through_the_sealed_layers() {
    use crate::vectors_session::assert_record;
    use sotto_protocol::{PqPolicy, PreKeySignalMessage, SessionRecord, SignalMessage};
    use sotto_test_support::transcript;

    for f in fixtures() {
        let v = &f.v;
        let now_ms = u64_field(&v["generator"], "now_unix_ms");
        let bob = transcript::bob(v);
        let setup = &v["session_setup"];
        let mut alice = SessionRecord::new();
        let mut rng = ReplayRng::new("setup", &[&setup["process_prekey_bundle_rng_draws"]]);
        let registration_id = u64_field(&v["alice"], "registration_id") as u32;
        alice
            .initiate(
                &f.alice,
                registration_id,
                &transcript::bundle(v),
                PqPolicy::RequireKyber,
                now_ms,
                &mut rng,
            )
            .unwrap();
        rng.assert_exhausted();
        assert_record(&alice, &setup["alice_session_after"], &f.name);
        let mut bob_record = SessionRecord::new();
        let steps = v["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 3, "{}", f.name);

        for (i, step) in steps.iter().enumerate() {
            let what = format!("{} step {i}", f.name);
            match str_field(step, "event") {
                "plain_reply" => {
                    let message = bob_record
                        .encrypt(&hex_field(step, "plaintext_hex"), now_ms)
                        .unwrap();
                    assert_eq!(
                        message.serialize(),
                        &hex_field(&step["message"], "serialized")[..],
                        "{what}"
                    );
                    let mut rng = ReplayRng::new(what.clone(), &[&step["decrypt_rng_draws"]]);
                    let parsed = SignalMessage::try_from(message.serialize()).unwrap();
                    assert_eq!(
                        alice.decrypt(&parsed, &mut rng).unwrap(),
                        hex_field(step, "plaintext_hex")
                    );
                    rng.assert_exhausted();
                    assert_record(&alice, &step["alice_session_after"], &what);
                }
                sealed => {
                    let plaintext = hex_field(&step["decrypted"], "plaintext_hex");
                    let inner = alice.encrypt(&plaintext, now_ms).unwrap();
                    assert_eq!(
                        inner.serialize(),
                        &hex_field(&step["inner_message"], "serialized")[..],
                        "{what}"
                    );
                    let wire = if sealed == "sealed_sender_v1" {
                        hex_field(&step["sealed"], "serialized")
                    } else {
                        hex_field(&step["received_message"], "serialized")
                    };
                    let usmc = sealed_sender_decrypt(
                        &f.bob,
                        &wire,
                        &f.trust_root.public_key,
                        f.validation_time_ms,
                    )
                    .unwrap();
                    assert_eq!(usmc.content(), inner.serialize(), "{what}");
                    let certificate = usmc.sender();
                    assert_eq!(certificate.key(), f.alice.identity_key(), "{what}");
                    let mut rng = ReplayRng::new(what.clone(), &[&step["decrypt_rng_draws"]]);
                    let decrypted = match usmc.msg_type() {
                        SealedContentType::PreKey => {
                            let message = PreKeySignalMessage::try_from(usmc.content()).unwrap();
                            bob_record
                                .decrypt_prekey(&message, &bob.secrets(), &mut rng)
                                .unwrap()
                                .plaintext
                        }
                        SealedContentType::Whisper => bob_record
                            .decrypt(&SignalMessage::try_from(usmc.content()).unwrap(), &mut rng)
                            .unwrap(),
                        other => panic!("{what}: unexpected content type {other:?}"),
                    };
                    rng.assert_exhausted();
                    assert_eq!(decrypted, plaintext, "{what}");
                    assert_record(&bob_record, &step["bob_session_after"], &what);
                }
            }
        }
    }
}
