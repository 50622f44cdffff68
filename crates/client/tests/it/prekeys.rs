//! One-time prekeys are topped up when the server runs low.

use sotto_api::PREKEY_LOW_WATER;
use sotto_server::store::{DeviceAddress, SqliteStore, Store};

use crate::support::*;

async fn counts(store: &SqliteStore, username: &str) -> (u32, u32) {
    let devices = store.account_devices(username).await.unwrap().unwrap();
    let address = DeviceAddress {
        account: devices.account,
        device_id: 1,
    };
    let counts = store.prekey_counts(address).await.unwrap();
    (counts.one_time, counts.one_time_kyber)
}

/// Hands out bundles until the server has `left` one-time prekeys of each kind.
async fn drain(store: &SqliteStore, username: &str, left: u32) {
    while counts(store, username).await.0 > left {
        store
            .take_bundles(username, None, true)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_topped_up_on_connect_and_after_use() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let operator = SqliteStore::open(&data.path().join("sotto.db"))
        .await
        .unwrap();
    let bob_profile = Profile::new();
    let bob = bob_profile.register(server.info(), "bob").await;
    assert_eq!(counts(&operator, "bob").await, (100, 100));
    bob.close().await;
    drop(bob);

    // Others fetched most of Bob's bundles while he was away; he tops up on connecting.
    drain(&operator, "bob", PREKEY_LOW_WATER - 5).await;
    assert_eq!(
        counts(&operator, "bob").await,
        (PREKEY_LOW_WATER - 5, PREKEY_LOW_WATER - 5)
    );
    let bob = bob_profile.open().await;
    assert_eq!(
        counts(&operator, "bob").await,
        (PREKEY_LOW_WATER + 95, PREKEY_LOW_WATER + 95)
    );

    // All gone, then a session-starting message arrives (with the last-resort Kyber key and
    // no one-time EC key): Bob decrypts it and tops up on his own.
    drain(&operator, "bob", 0).await;
    let (alice_profile, carol_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile.register(server.info(), "alice").await;
    alice
        .send_text("bob", "no one-time keys left")
        .await
        .unwrap();
    assert_eq!(next_message(&bob).await.text, "no one-time keys left");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while counts(&operator, "bob").await.0 < PREKEY_LOW_WATER {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bob never topped up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counts(&operator, "bob").await, (100, 100));

    // The new keys work: Carol's session uses one of them, and Bob can decrypt it.
    let carol = carol_profile.register(server.info(), "carol").await;
    carol.send_text("bob", "fresh keys").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "fresh keys");
    assert_eq!(counts(&operator, "bob").await, (99, 99));
    bob.send_text("carol", "thanks").await.unwrap();
    assert_eq!(next_message(&carol).await.text, "thanks");

    for client in [alice, bob, carol] {
        client.close().await;
    }
    server.stop().await;
}
