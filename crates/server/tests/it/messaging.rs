//! Sends and mailboxes: device lists, live push, delivery on reconnect, order, acks, expiry.

use std::time::Duration;

use sotto_api::{request::Body, response, ErrorCode, SendMessage, MAX_ENVELOPE_CONTENT_BYTES};

use crate::support::*;

fn mismatch_of(body: response::Body) -> Vec<sotto_api::DeviceMismatch> {
    match body {
        response::Body::Error(e) => {
            assert_eq!(e.code(), ErrorCode::DeviceMismatch, "{e}");
            e.mismatch
        }
        other => panic!("expected a device mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_device_lists_are_answered_with_the_difference() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    let bob_reg = bob.registration_id;
    let send = |envelopes, own_envelopes| {
        Body::Send(SendMessage {
            destination: "bob".into(),
            envelopes,
            own_envelopes,
        })
    };

    let m = mismatch_of(alice.client.request(send(vec![], vec![])).await);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].own, &m[0].missing, &m[0].extra, &m[0].stale),
        (false, &vec![1], &vec![], &vec![])
    );

    let wrong = vec![envelope(2, 5, b"x"), envelope(3, 5, b"x")];
    let m = mismatch_of(alice.client.request(send(wrong, vec![])).await);
    assert_eq!((&m[0].missing, &m[0].extra), (&vec![1], &vec![2, 3]));

    let stale = vec![envelope(1, bob_reg ^ 1, b"x")];
    let m = mismatch_of(alice.client.request(send(stale, vec![])).await);
    assert_eq!(
        (&m[0].missing, &m[0].extra, &m[0].stale),
        (&vec![], &vec![], &vec![1])
    );

    // The sender's own account has no other device.
    let own = vec![envelope(2, 1, b"x")];
    let m = mismatch_of(
        alice
            .client
            .request(send(vec![envelope(1, bob_reg, b"x")], own))
            .await,
    );
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].own, &m[0].extra), (true, &vec![2]));

    // Sending to one's own account: its other devices (none here).
    let to_self = Body::Send(SendMessage {
        destination: "alice".into(),
        envelopes: vec![envelope(1, alice.registration_id, b"x")],
        own_envelopes: vec![],
    });
    let m = mismatch_of(alice.client.request(to_self).await);
    assert_eq!((m[0].own, &m[0].extra), (false, &vec![1]));

    // Other refusals.
    let nobody = Body::Send(SendMessage {
        destination: "nobody".into(),
        envelopes: vec![envelope(1, 1, b"x")],
        own_envelopes: vec![],
    });
    assert_eq!(
        alice.client.request_error(nobody).await.code(),
        ErrorCode::NotFound
    );
    let big = vec![envelope(
        1,
        bob_reg,
        &vec![0; MAX_ENVELOPE_CONTENT_BYTES + 1],
    )];
    assert_eq!(
        alice.client.request_error(send(big, vec![])).await.code(),
        ErrorCode::TooLarge
    );
    let empty = vec![envelope(1, bob_reg, b"")];
    assert_eq!(
        alice.client.request_error(send(empty, vec![])).await.code(),
        ErrorCode::BadRequest
    );

    // The retry with the right list goes through, and only it was stored.
    alice.send_ok(&bob, b"right").await;
    let envelope = bob.client.next_envelope().await;
    assert_eq!(envelope.content, b"right");
    bob.client.assert_quiet().await;
    bob.reconnect(&server).await;
    assert_eq!(bob.client.drain().await.len(), 1);
}

#[tokio::test]
async fn live_push_then_ack_deletes() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    alice.send_ok(&bob, b"hello bob").await;
    let envelope = bob.client.next_envelope().await;
    assert_eq!(envelope.source, "alice");
    assert_eq!(envelope.source_device, 1);
    assert_eq!(envelope.content, b"hello bob");
    assert_eq!(envelope.r#type, sotto_api::EnvelopeType::Message as i32);
    assert!(envelope.server_timestamp_ms > 0);
    bob.client.assert_quiet().await;

    bob.ack(vec![envelope.id]).await;
    bob.reconnect(&server).await;
    assert!(
        bob.client.drain().await.is_empty(),
        "acknowledged envelopes are gone"
    );
    assert_eq!(server.metric("sotto_envelopes_acknowledged_total").await, 1);
}

#[tokio::test]
async fn mailboxes_are_delivered_in_order_on_every_reconnect_until_acked() {
    const COUNT: usize = 70; // more than one page of pushes
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    bob.client.close().await;
    let bob_reg = bob.registration_id;

    // Pipelined: many sends in flight at once, committed in batches.
    let mut ids = Vec::new();
    for i in 0..COUNT {
        let send = Body::Send(SendMessage {
            destination: "bob".into(),
            envelopes: vec![envelope(1, bob_reg, format!("message {i}").as_bytes())],
            own_envelopes: vec![],
        });
        ids.push(alice.client.start_request(send).await);
        if ids.len() == 16 {
            for id in ids.drain(..) {
                assert!(matches!(
                    alice.client.response(id).await,
                    response::Body::Sent(_)
                ));
            }
        }
    }
    for id in ids {
        assert!(matches!(
            alice.client.response(id).await,
            response::Body::Sent(_)
        ));
    }

    let mut first_ids = Vec::new();
    for round in 0..2 {
        bob.reconnect(&server).await;
        let envelopes = bob.client.drain().await;
        let contents: Vec<String> = envelopes
            .iter()
            .map(|e| String::from_utf8(e.content.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..COUNT).map(|i| format!("message {i}")).collect();
        assert_eq!(contents, expected, "round {round}: all, in order");
        let ids: Vec<u64> = envelopes.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
        if round == 0 {
            first_ids = ids;
        } else {
            assert_eq!(ids, first_ids, "the same envelopes again");
        }
        bob.client.assert_quiet().await;
    }

    // Acknowledge the first half; only the second half comes again.
    bob.ack(first_ids[..COUNT / 2].to_vec()).await;
    bob.reconnect(&server).await;
    let left: Vec<u64> = bob.client.drain().await.iter().map(|e| e.id).collect();
    assert_eq!(left, first_ids[COUNT / 2..]);
    // New envelopes while connected are pushed live after the old ones, once each.
    alice.send_ok(&bob, b"late").await;
    let late = bob.client.next_envelope().await;
    assert_eq!(late.content, b"late");
    assert!(late.id > *first_ids.last().unwrap());
    bob.client.assert_quiet().await;
}

#[tokio::test]
async fn acknowledging_another_devices_ids_deletes_nothing_of_theirs() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    let mut mallory = Device::register(&server, "mallory", 0).await;
    alice.send_ok(&bob, b"one").await;
    alice.send_ok(&bob, b"two").await;
    let ids = vec![
        bob.client.next_envelope().await.id,
        bob.client.next_envelope().await.id,
    ];
    // Mallory acknowledges bob's ids (and more): her own mailbox is the only one she touches.
    mallory
        .ack(ids.iter().copied().chain(0..100).collect())
        .await;
    bob.reconnect(&server).await;
    let again: Vec<u64> = bob.client.drain().await.iter().map(|e| e.id).collect();
    assert_eq!(again, ids);
    assert_eq!(server.metric("sotto_envelopes_acknowledged_total").await, 0);
}

#[tokio::test]
async fn a_second_connection_of_a_device_replaces_the_first() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    let mut second = TestClient::connect(&server, &bob.key).await;
    second.prove().await;
    second.queue_empty().await;
    let frame = closed(&mut bob.client.ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4000);
    alice.send_ok(&bob, b"to the new one").await;
    assert_eq!(second.next_envelope().await.content, b"to the new one");
}

#[tokio::test]
async fn undelivered_envelopes_expire() {
    let server = TestServer::start_with(|c| {
        c.message_ttl = Duration::from_secs(1);
        c.expiry_interval = Duration::from_millis(100);
    })
    .await;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    bob.client.close().await;
    alice.send_ok(&bob, b"soon gone").await;
    // Wait (bounded) until the expiry task reports the deletion.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.metric("sotto_envelopes_expired_total").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the envelope never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bob.reconnect(&server).await;
    assert!(bob.client.drain().await.is_empty());
}
