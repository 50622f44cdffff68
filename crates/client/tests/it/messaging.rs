//! Messages both ways, offline delivery, storing before acknowledging, deduplication,
//! reconnection.

use std::time::Duration;

use sotto_client::Event;
use sotto_protocol::{IdentityKey, PreKeySignalMessage};
use sotto_test_support::forgery;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_both_ways_and_land_in_the_history() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    assert_eq!((alice.username(), alice.device_id()), ("alice", 1));

    alice.send_text("bob", "hello Bob").await.unwrap();
    alice.send_text("bob", "are you there?").await.unwrap();
    let first = next_message(&bob).await;
    assert_eq!(
        (first.from.as_str(), first.from_device, first.text.as_str()),
        ("alice", 1, "hello Bob")
    );
    assert_eq!(next_message(&bob).await.text, "are you there?");

    bob.send_text("alice", "hi Alice").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "hi Alice");
    alice.send_text("bob", "good").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "good");

    let history = alice.history("bob", 10).unwrap();
    let lines: Vec<(bool, &str)> = history
        .iter()
        .map(|h| (h.outgoing, h.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (true, "hello Bob"),
            (true, "are you there?"),
            (false, "hi Alice"),
            (true, "good")
        ]
    );
    assert!(history.iter().all(|h| h.peer == "bob"));
    assert_eq!(alice.history("bob", 1).unwrap()[0].text, "good");

    // Both know each other, unverified, and see the same safety number.
    let contacts = alice.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].username, "bob");
    assert!(!contacts[0].verified && !contacts[0].identity_key_changed);
    let theirs = bob.safety_number("alice").unwrap();
    let ours = alice.safety_number("bob").unwrap();
    assert_eq!(ours.digits, theirs.digits);
    assert_eq!(ours.digits.len(), 60);
    assert!(ours.digits.bytes().all(|b| b.is_ascii_digit()));
    assert_ne!(
        ours.scannable, theirs.scannable,
        "each side's QR code lists its own key first"
    );
    alice.verify("bob").unwrap();
    assert!(alice.contacts().unwrap()[0].verified);

    // Refusals that never reach the network.
    assert!(matches!(
        alice.send_text("alice", "me").await,
        Err(sotto_client::ClientError::SendToSelf)
    ));
    assert!(matches!(
        alice.send_text("nobody", "hello").await,
        Err(sotto_client::ClientError::UnknownUser(name)) if name == "nobody"
    ));
    assert!(
        alice.history("nobody", 10).unwrap().is_empty(),
        "a failed send leaves no history"
    );
    let long = "x".repeat(sotto_client::MAX_TEXT_BYTES + 1);
    assert!(matches!(
        alice.send_text("bob", &long).await,
        Err(sotto_client::ClientError::TextTooLong { .. })
    ));
    assert!(matches!(
        alice.safety_number("carol"),
        Err(sotto_client::ClientError::UnknownUser(_))
    ));

    alice.close().await;
    bob.close().await;
    assert!(alice.next_event().await.is_none());
    assert!(alice.send_text("bob", "after close").await.is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_gets_everything_on_reconnect_stored_before_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    bob.close().await;
    drop(bob);

    // More than one receive batch.
    for i in 0..120 {
        alice
            .send_text("bob", &format!("message {i}"))
            .await
            .unwrap();
    }
    let bob = bob_profile.open().await;
    let events = until_queue_empty(&bob).await;
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        (0..120).map(|i| format!("message {i}")).collect::<Vec<_>>()
    );
    bob.close().await;
    drop(bob);

    // The server deleted them only after they were stored: the mailbox is empty, and the
    // reopened profile has them.
    let waiting: i64 = server
        .database()
        .query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waiting, 0);
    let bob = bob_profile.open().await;
    assert_eq!(
        until_queue_empty(&bob).await,
        vec![Event::QueueEmpty],
        "nothing is delivered twice"
    );
    let history = bob.history("alice", 1000).unwrap();
    assert_eq!(history.len(), 120);
    assert!(history.iter().all(|h| !h.outgoing && h.peer == "alice"));
    assert_eq!(history[119].text, "message 119");

    // The profile on disk shows neither the texts nor the contact's name.
    let raw = bob_profile.raw_bytes();
    assert!(!contains(&raw, b"message 11"));
    assert!(!contains(&raw, b"alice"));

    // And the conversation goes on from the stored sessions.
    bob.send_text("alice", "got them").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "got them");
    alice.close().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_envelopes_produce_no_second_message() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    bob.close().await;
    drop(bob);
    alice.send_text("bob", "only once").await.unwrap();

    // The operator keeps a copy of the envelope while it waits in Bob's mailbox.
    let db = server.database();
    db.execute_batch("CREATE TABLE saved AS SELECT * FROM envelopes;")
        .unwrap();
    let saved: i64 = db
        .query_row("SELECT COUNT(*) FROM saved", [], |r| r.get(0))
        .unwrap();
    assert_eq!(saved, 1);

    let bob = bob_profile.open().await;
    assert_eq!(next_message(&bob).await.text, "only once");
    assert_eq!(next_event(&bob).await, Event::QueueEmpty);
    bob.close().await;
    drop(bob);

    // Redelivered twice over: under its own id (as after a lost acknowledgement) and under a
    // new id (a replay the ratchet recognises).
    drop(db);
    let server = server
        .edit_offline(|db| {
            db.execute_batch(
                "INSERT INTO envelopes SELECT * FROM saved;
                 UPDATE saved SET seq = seq + 1000;
                 INSERT INTO envelopes SELECT * FROM saved;
                 UPDATE devices SET mailbox_count = mailbox_count + 2, next_seq = next_seq + 2000
                   WHERE account = (SELECT account FROM saved)
                     AND device_id = (SELECT device_id FROM saved);",
            )
            .unwrap();
        })
        .await;
    let db = server.database();
    let bob = bob_profile.open().await;
    assert_eq!(until_queue_empty(&bob).await, vec![Event::QueueEmpty]);
    assert_eq!(bob.history("alice", 10).unwrap().len(), 1);
    // Acknowledgements go out in the background; closing waits for them.
    bob.close().await;
    let waiting: i64 = db
        .query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waiting, 0, "both copies were acknowledged");
    alice.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_after_the_server_restarts() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let addr = server.addr;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    alice.send_text("bob", "before").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "before");

    server.stop().await;
    let server = TestServer::start(data.path(), addr).await;
    // Requests wait for the connection to come back.
    alice.send_text("bob", "after").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "after");
    bob.send_text("alice", "still here").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "still here");
    alice.close().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_that_does_not_decrypt_is_reported_acknowledged_and_dropped() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    alice.send_text("bob", "first").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "first");
    // Bob answers, so that Alice's next message is a plain ratchet message whose last bytes
    // are its MAC.
    bob.send_text("alice", "ok").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "ok");
    bob.close().await;
    drop(bob);

    alice.send_text("bob", "second").await.unwrap();
    // The operator forges envelopes "from alice" next to the real one (Alice's own mailbox,
    // where "ok" may wait for her acknowledgement, is left alone): garbage, a flipped
    // bit in the real ciphertext, and a type this client does not read.
    let server = server
        .edit_offline(|db| {
            db.execute_batch(
                "CREATE TABLE saved AS SELECT * FROM envelopes WHERE source_account = (SELECT id FROM accounts WHERE username = 'alice');
                 CREATE TABLE forged AS SELECT * FROM saved;
                 UPDATE forged SET seq = seq + 1000, content = x'0102030405';
                 INSERT INTO forged SELECT * FROM saved;
                 UPDATE forged SET seq = seq + 3000, envelope_type = 3 WHERE seq < 1000;
                 INSERT INTO forged SELECT * FROM saved;
                 UPDATE forged SET seq = seq + 1500 WHERE seq < 1000;
                 UPDATE envelopes SET seq = seq + 4000 WHERE source_account = (SELECT id FROM accounts WHERE username = 'alice');",
            )
            .unwrap();
            let mut content: Vec<u8> = db
                .query_row("SELECT content FROM saved", [], |r| r.get(0))
                .unwrap();
            let last = content.len() - 1;
            content[last] ^= 1;
            // Delivered before the real one (moved to the end): a copy after it would be
            // recognised as a duplicate without a word.
            db.execute(
                "UPDATE forged SET content = ?1 WHERE seq > 1500 AND seq < 2000",
                [&content],
            )
            .unwrap();
            db.execute_batch(
                "INSERT INTO envelopes SELECT * FROM forged;
                 UPDATE devices SET mailbox_count = mailbox_count + 3, next_seq = next_seq + 5000
                   WHERE account = (SELECT account FROM saved)
                     AND device_id = (SELECT device_id FROM saved);",
            )
            .unwrap();
        })
        .await;
    let db = server.database();
    let bob = bob_profile.open().await;
    let events = until_queue_empty(&bob).await;
    let failures = events
        .iter()
        .filter(|e| matches!(e, Event::DecryptFailed { from, .. } if from == "alice"))
        .count();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["second"]);
    assert_eq!(failures, 3, "{events:?}");
    assert_eq!(bob.history("alice", 10).unwrap().len(), 3);
    // The session survived the forgeries.
    alice.send_text("bob", "third").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "third");
    bob.send_text("alice", "fine").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "fine");
    alice.close().await;
    // Acknowledgements go out in the background; closing waits for them.
    bob.close().await;
    let waiting: i64 = db
        .query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waiting, 0, "failures are acknowledged too");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_event_loses_nothing_when_cancelled() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    bob.close().await;
    drop(bob);
    for i in 0..30 {
        alice.send_text("bob", &format!("m{i}")).await.unwrap();
    }
    let bob = bob_profile.open().await;
    // Every call is dropped after its first poll unless it is ready at once, as a UI's
    // `select!` would drop it.
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events stopped coming"
        );
        match tokio::time::timeout(std::time::Duration::ZERO, bob.next_event()).await {
            Ok(Some(Event::Message(message))) => texts.push(message.text),
            Ok(Some(Event::QueueEmpty)) => break,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => tokio::task::yield_now().await,
        }
    }
    assert_eq!(texts, (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(bob.history("alice", 100).unwrap().len(), 30);
    alice.close().await;
    bob.close().await;
    server.stop().await;
}

/// The server stores a message but its answer never reaches the sender: the send is made
/// again with the same message id, and the recipient shows the message once and acknowledges
/// both envelopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_with_unknown_outcome_is_retried_and_shown_once() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let bob = bob_profile.register(server.info(), "bob").await;
    bob.close().await;
    drop(bob);
    let alice = alice_profile.register(proxy.info(&server), "alice").await;
    // A first message sets up the session, so that the next send is a single request.
    alice.send_text("bob", "first").await.unwrap();
    let db = server.database();
    let waiting = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(waiting(&db), 1);

    proxy.swallow_answers();
    let sending = tokio::spawn({
        let alice = alice.clone();
        async move { alice.send_text("bob", "only once").await }
    });
    // The server stored it; its answer is swallowed, then the connection drops.
    tokio::time::timeout(PATIENCE, async {
        while waiting(&db) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server stores the message");
    proxy.cut();
    tokio::time::timeout(PATIENCE, sending)
        .await
        .expect("the send ends")
        .unwrap()
        .expect("sent again after reconnecting");

    // Two envelopes of the same message wait for Bob, encrypted differently.
    assert_eq!(waiting(&db), 3);
    let distinct: i64 = db
        .query_row("SELECT COUNT(DISTINCT content) FROM envelopes", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(distinct, 3);
    let sent: Vec<String> = alice
        .history("bob", 10)
        .unwrap()
        .into_iter()
        .map(|h| h.text)
        .collect();
    assert_eq!(
        sent,
        ["first", "only once"],
        "one history entry for both copies"
    );

    let bob = bob_profile.open().await;
    let texts: Vec<String> = until_queue_empty(&bob)
        .await
        .into_iter()
        .filter_map(|event| match event {
            Event::Message(message) => Some(message.text),
            Event::QueueEmpty => None,
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(texts, ["first", "only once"]);
    assert_eq!(bob.history("alice", 10).unwrap().len(), 2);
    // The conversation goes on: the copy's ratchet step was kept.
    alice.send_text("bob", "and more").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "and more");
    bob.close().await;
    assert_eq!(waiting(&db), 0, "every copy was acknowledged");
    alice.close().await;
    drop(db);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_from_one_client_all_arrive_once_and_both_can_go_on() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;

    // Many sends at once share local commits and socket writes; each one is its own message.
    const SENDS: usize = 40;
    let sends: Vec<_> = (0..SENDS)
        .map(|i| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.send_text("bob", &format!("message {i}")).await })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    let mut received = std::collections::BTreeSet::new();
    for _ in 0..SENDS {
        assert!(received.insert(next_message(&bob).await.text));
    }
    let expected: std::collections::BTreeSet<_> =
        (0..SENDS).map(|i| format!("message {i}")).collect();
    assert_eq!(received, expected);
    assert_eq!(alice.history("bob", 100).unwrap().len(), SENDS);
    assert_eq!(bob.history("alice", 100).unwrap().len(), SENDS);

    // The sessions both sides stored are the ones they went on with.
    bob.send_text("alice", "all there").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "all there");
    alice.send_text("bob", "good").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "good");
    alice.close().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_stopped_without_closing_skips_its_reserved_counters_and_is_read_on_across_the_gap(
) {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    alice.send_text("bob", "hello").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "hello");
    bob.send_text("alice", "hi").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "hi");

    // Sends within a reservation, then the process goes away without closing the profile
    // (as in a crash): the reopened profile moves the sending chain past the reservation.
    for text in ["one", "two", "three"] {
        alice.send_text("bob", text).await.unwrap();
    }
    drop(alice);
    let alice = alice_profile.open().await;
    alice.send_text("bob", "after the restart").await.unwrap();
    for text in ["one", "two", "three", "after the restart"] {
        assert_eq!(next_message(&bob).await.text, text);
    }
    // And the conversation goes on both ways.
    bob.send_text("alice", "still here").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "still here");
    alice.close().await;
    bob.close().await;
    server.stop().await;
}

/// Replays of a captured PreKey message under other names for its base key (shifted by each
/// point of small order, or written non-canonically) and under another identity key: each is
/// reported, acknowledged and dropped with nothing stored, and the real message, its session
/// and the conversation go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_a_prekey_message_under_other_keys_are_reported_and_dropped() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    bob.close().await;
    drop(bob);
    alice.send_text("bob", "first").await.unwrap();
    // The forgeries of the base key go before the real message (Bob still has every prekey
    // it names), the one of the identity key after it (Bob then has its session).
    let server = server
        .edit_offline(|db| {
            let content: Vec<u8> = db
                .query_row(
                    "SELECT content FROM envelopes WHERE source_account = (SELECT id FROM accounts WHERE username = 'alice')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let real = PreKeySignalMessage::try_from(&content[..]).unwrap();
            let mut forgeries: Vec<(i64, Vec<u8>)> = forgery::base_key_replays(&real)
                .into_iter()
                .enumerate()
                .map(|(i, (_, m))| (100 + i as i64, m.serialize().to_vec()))
                .collect();
            let other = IdentityKey::new(*real.base_key());
            let forged = forgery::with_identity_key(&real, &other);
            forgeries.push((5000, forged.serialize().to_vec()));
            db.execute_batch(
                "CREATE TABLE saved AS SELECT * FROM envelopes WHERE source_account = (SELECT id FROM accounts WHERE username = 'alice');
                 CREATE TABLE forged AS SELECT * FROM saved WHERE 0;
                 UPDATE envelopes SET seq = seq + 4000 WHERE source_account = (SELECT id FROM accounts WHERE username = 'alice');",
            )
            .unwrap();
            for (offset, content) in &forgeries {
                db.execute("INSERT INTO forged SELECT * FROM saved", [])
                    .unwrap();
                db.execute(
                    "UPDATE forged SET seq = seq + ?1, content = ?2",
                    rusqlite::params![offset, content],
                )
                .unwrap();
                db.execute_batch("INSERT INTO envelopes SELECT * FROM forged; DELETE FROM forged;")
                    .unwrap();
            }
            db.execute(
                "UPDATE devices SET mailbox_count = mailbox_count + ?1, next_seq = next_seq + 6000
                   WHERE account = (SELECT account FROM saved)
                     AND device_id = (SELECT device_id FROM saved)",
                [forgeries.len() as i64],
            )
            .unwrap();
        })
        .await;
    let bob = bob_profile.open().await;
    let events = until_queue_empty(&bob).await;
    let mut reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::DecryptFailed { from, reason } if from == "alice" => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["first"], "{events:?}");
    assert_eq!(
        reasons,
        [
            "base key is not in the prime-order subgroup",
            "identity key differs from the session's",
            "non-canonical base key",
        ],
        "{events:?}"
    );
    let failures = events
        .iter()
        .filter(|e| matches!(e, Event::DecryptFailed { .. }))
        .count();
    assert_eq!(failures, 9, "{events:?}");
    // One session, Alice's: the conversation goes on both ways.
    bob.send_text("alice", "hello").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "hello");
    alice.send_text("bob", "second").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "second");
    alice.close().await;
    bob.close().await;
    server.stop().await;
}
