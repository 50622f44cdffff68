//! Identity keys: trust on first use, a contact who comes back with a new key, verification.

use sotto_client::{ClientError, Event};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_registering_again_under_the_same_name_is_noticed() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile, new_bob_profile) =
        (Profile::new(), Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    alice.send_text("bob", "hi").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "hi");
    bob.send_text("alice", "hi back").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "hi back");
    let old_number = alice.safety_number("bob").unwrap();
    alice.verify("bob").unwrap();
    bob.close().await;
    drop(bob);

    // Bob's account goes away (the operator renames it) and someone registers "bob" anew,
    // with a new identity key.
    let server = server
        .edit_offline(|db| {
            db.execute(
                "UPDATE accounts SET username = 'bob-departed' WHERE username = 'bob'",
                [],
            )
            .unwrap();
        })
        .await;
    let new_bob = new_bob_profile.register(server.info(), "bob").await;
    new_bob
        .send_text("alice", "it's me, new phone")
        .await
        .unwrap();
    assert_eq!(
        next_notable_event(&alice).await,
        Event::IdentityChanged {
            username: "bob".into()
        }
    );
    assert_eq!(next_message(&alice).await.text, "it's me, new phone");

    let contact = alice
        .contacts()
        .unwrap()
        .into_iter()
        .find(|c| c.username == "bob")
        .unwrap();
    assert!(contact.identity_key_changed && !contact.verified);
    assert_ne!(
        alice.safety_number("bob").unwrap().digits,
        old_number.digits
    );
    // Bob was verified: nothing goes to the new key until it is verified too.
    assert!(matches!(
        alice.send_text("bob", "who are you?").await,
        Err(ClientError::UntrustedIdentity { username }) if username == "bob"
    ));
    assert_eq!(
        new_bob.safety_number("alice").unwrap().digits,
        alice.safety_number("bob").unwrap().digits
    );
    alice.verify("bob").unwrap();
    let contact = alice
        .contacts()
        .unwrap()
        .into_iter()
        .find(|c| c.username == "bob")
        .unwrap();
    assert!(contact.verified && !contact.identity_key_changed);
    alice.send_text("bob", "welcome back").await.unwrap();
    assert_eq!(next_message(&new_bob).await.text, "welcome back");

    alice.close().await;
    new_bob.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_a_contact_whose_device_was_replaced_fetches_the_new_key() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (alice_profile, bob_profile, new_bob_profile) =
        (Profile::new(), Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    let bob = bob_profile.register(server.info(), "bob").await;
    alice.send_text("bob", "hi").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "hi");
    bob.close().await;
    drop(bob);
    let server = server
        .edit_offline(|db| {
            db.execute(
                "UPDATE accounts SET username = 'bob-departed' WHERE username = 'bob'",
                [],
            )
            .unwrap();
        })
        .await;
    let new_bob = new_bob_profile.register(server.info(), "bob").await;
    // Two random 14-bit registration ids may coincide; if they do, give the new device
    // another one on the server, so that the old session's id is stale there.
    let server = server
        .edit_offline(|db| {
            db.execute(
                    "UPDATE devices SET registration_id = (registration_id % 16383) + 1
                     WHERE account = (SELECT id FROM accounts WHERE username = 'bob')
                       AND registration_id = (SELECT registration_id FROM devices
                                              WHERE account = (SELECT id FROM accounts WHERE username = 'bob-departed'))",
                    [],
                )
                .unwrap();
        })
        .await;
    // Alice still has the session with the old device: the server calls it stale, Alice
    // fetches the new bundle, notices the new key (unverified: sending goes on).
    alice.send_text("bob", "still you?").await.unwrap();
    assert_eq!(
        next_notable_event(&alice).await,
        Event::IdentityChanged {
            username: "bob".into()
        }
    );
    assert_eq!(next_message(&new_bob).await.text, "still you?");
    assert!(alice.contacts().unwrap()[0].identity_key_changed);
    alice.close().await;
    new_bob.close().await;
    server.stop().await;
}
