//! Two instances sharing one PostgreSQL database and NATS: a message sent through one reaches
//! a device connected to the other, live; a device's newer connection on one instance replaces
//! its older one on the other.

use sotto_test_support::postgres::TestDatabase;

use crate::support::*;

/// The NATS server of the test environment.
const NATS_URL: &str = "nats://127.0.0.1:4222";

#[tokio::test]
async fn a_message_sent_through_one_instance_reaches_a_device_on_the_other() {
    let db = TestDatabase::create().await;
    // A subject prefix of this test's own, so that tests running at once do not cross.
    let prefix = format!("sottotest.{:016x}", rand::random::<u64>());
    let start = || {
        let (url, prefix) = (db.url().to_owned(), prefix.clone());
        TestServer::start_with(move |c| {
            c.database_url = Some(url);
            c.nats_url = Some(NATS_URL.into());
            c.nats_subject_prefix = prefix;
        })
    };
    let a = start().await;
    let b = start().await;

    let mut alice = Device::register(&a, "alice", 1).await;
    let mut bob = Device::register(&b, "bob", 1).await;

    // A → B, live.
    alice.send_ok(&bob, b"across instances").await;
    let envelope = bob.client.next_envelope().await;
    assert_eq!(
        (envelope.source.as_str(), &envelope.content[..]),
        ("alice", &b"across instances"[..])
    );
    bob.ack(vec![envelope.id]).await;

    // B → A, live, while bob's envelopes stay on B's side once each.
    bob.send_ok(&alice, b"and back").await;
    assert_eq!(alice.client.next_envelope().await.content, b"and back");
    bob.client.assert_quiet().await;

    // Bob connects to A as well: his connection on B is replaced.
    let mut bob_on_a = TestClient::connect(&a, &bob.key).await;
    bob_on_a.prove().await;
    bob_on_a.queue_empty().await;
    let frame = closed(&mut bob.client.ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4000);
    alice.send_ok(&bob, b"to A now").await;
    assert_eq!(bob_on_a.next_envelope().await.content, b"to A now");

    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}
