//! Registration: validation, uniqueness, and that a refused registration stores nothing.

use sotto_api::{request::Body, response, ErrorCode, GetBundles, PrekeyCount};
use sotto_channel::StaticKeypair;

use crate::support::*;

fn code(error: &sotto_api::Error) -> ErrorCode {
    error.code()
}

#[tokio::test]
async fn refused_registrations_store_nothing() {
    let server = TestServer::start().await;
    let key = StaticKeypair::generate();
    let mut client = TestClient::connect(&server, &key).await;

    let mut bad_name = register_request("Carol", 7, 2);
    let error = client.request_error(Body::Register(bad_name.clone())).await;
    assert_eq!(code(&error), ErrorCode::BadRequest, "{error}");
    bad_name.username = "c".into();
    assert_eq!(
        code(&client.request_error(Body::Register(bad_name)).await),
        ErrorCode::BadRequest
    );

    let mut bad_identity = register_request("carol", 7, 2);
    bad_identity.identity_key[0] = 0x08;
    assert_eq!(
        code(&client.request_error(Body::Register(bad_identity)).await),
        ErrorCode::BadRequest
    );

    let mut bad_kyber = register_request("carol", 7, 2);
    bad_kyber.one_time_kyber[1].public_key.truncate(1000);
    assert_eq!(
        code(&client.request_error(Body::Register(bad_kyber)).await),
        ErrorCode::BadRequest
    );

    let mut bad_signature = register_request("carol", 7, 2);
    bad_signature
        .signed_prekey
        .as_mut()
        .unwrap()
        .signature
        .push(0);
    let error = client.request_error(Body::Register(bad_signature)).await;
    assert_eq!(code(&error), ErrorCode::BadRequest);

    let bad_registration_id = register_request("carol", 0x4000, 2);
    let error = client
        .request_error(Body::Register(bad_registration_id))
        .await;
    assert_eq!(code(&error), ErrorCode::BadRequest);

    let too_many = register_request("carol", 7, sotto_api::MAX_PREKEYS_PER_UPLOAD as u32 + 1);
    assert_eq!(
        code(&client.request_error(Body::Register(too_many)).await),
        ErrorCode::TooLarge
    );

    // Still unregistered: the key was not stored with any of those.
    let error = client
        .request_error(Body::PrekeyCount(PrekeyCount {}))
        .await;
    assert_eq!(code(&error), ErrorCode::Unauthenticated);

    // The name and the key are both still free; the keys stored are the good ones.
    let good = register_request("carol", 7, 2);
    let identity = good.identity_key.clone();
    match client.request(Body::Register(good)).await {
        response::Body::Registered(r) => {
            assert_eq!((r.username.as_str(), r.device_id), ("carol", 1))
        }
        other => panic!("{other:?}"),
    }
    client.queue_empty().await;
    match client.request(Body::PrekeyCount(PrekeyCount {})).await {
        response::Body::PrekeyCounts(c) => assert_eq!((c.one_time, c.one_time_kyber), (2, 2)),
        other => panic!("{other:?}"),
    }
    let mut dave = Device::register(&server, "dave", 0).await;
    match dave
        .client
        .request(Body::GetBundles(GetBundles {
            username: "carol".into(),
            device_id: None,
        }))
        .await
    {
        response::Body::Bundles(b) => {
            assert_eq!(b.bundles.len(), 1);
            assert_eq!(b.bundles[0].identity_key, identity);
            assert_eq!(b.bundles[0].registration_id, 7);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn usernames_and_keys_are_unique() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 1).await;

    // Another key cannot take the name.
    let mut other = TestClient::connect(&server, &StaticKeypair::generate()).await;
    let error = other
        .request_error(Body::Register(register_request("alice", 9, 1)))
        .await;
    assert_eq!(code(&error), ErrorCode::Conflict);
    assert!(
        !error.message.contains("alice"),
        "no user content in messages"
    );

    // A registered connection cannot register again, under any name.
    let error = alice
        .client
        .request_error(Body::Register(register_request("alice2", 9, 1)))
        .await;
    assert_eq!(code(&error), ErrorCode::Conflict);

    // Nor can a new connection with the same key.
    alice.reconnect(&server).await;
    alice.client.queue_empty().await;
    let error = alice
        .client
        .request_error(Body::Register(register_request("alice3", 9, 1)))
        .await;
    assert_eq!(code(&error), ErrorCode::Conflict);

    // Those attempts created no accounts.
    let mut bob = Device::register(&server, "bob", 0).await;
    for name in ["alice2", "alice3"] {
        let get = GetBundles {
            username: name.into(),
            device_id: None,
        };
        let error = bob.client.request_error(Body::GetBundles(get)).await;
        assert_eq!(code(&error), ErrorCode::NotFound);
    }
    // The other key can still register a free name.
    let registered = other
        .request(Body::Register(register_request("erin", 9, 1)))
        .await;
    assert!(
        matches!(registered, response::Body::Registered(_)),
        "{registered:?}"
    );
}

#[tokio::test]
async fn xx_clients_register_and_reconnect() {
    let server = TestServer::start().await;
    let key = StaticKeypair::generate();
    let mut client = TestClient::connect_xx(&server, &key).await;
    let registered = client
        .request(Body::Register(register_request("xena", 3, 1)))
        .await;
    assert!(
        matches!(registered, response::Body::Registered(_)),
        "{registered:?}"
    );
    client.queue_empty().await;
    client.close().await;

    // The same key is the same device, over XX and over IK.
    for xx in [true, false] {
        let mut client = if xx {
            TestClient::connect_xx(&server, &key).await
        } else {
            TestClient::connect(&server, &key).await
        };
        // The first request binds the connection; then the mailbox is pushed.
        match client.request(Body::PrekeyCount(PrekeyCount {})).await {
            response::Body::PrekeyCounts(c) => assert_eq!(c.one_time, 1),
            other => panic!("{other:?}"),
        }
        client.queue_empty().await;
        client.close().await;
    }
}

#[tokio::test]
async fn registrations_from_one_address_are_rate_limited() {
    const PER_MINUTE: u32 = 3;
    let server =
        TestServer::start_with(|config| config.registrations_per_minute = PER_MINUTE).await;
    // Every test client connects from 127.0.0.1: one bucket.
    let mut first = None;
    for i in 0..PER_MINUTE {
        let device = Device::register(&server, &format!("user{i}"), 1).await;
        first.get_or_insert(device);
    }
    let mut alice = first.unwrap();

    let key = StaticKeypair::generate();
    let mut client = TestClient::connect(&server, &key).await;
    let error = client
        .request_error(Body::Register(register_request("dave", 4, 1)))
        .await;
    assert_eq!(code(&error), ErrorCode::RateLimited, "{error}");
    let retry_after = error.retry_after_ms.unwrap();
    assert!(
        (1..=60_000 / u64::from(PER_MINUTE)).contains(&retry_after),
        "{retry_after}"
    );
    // The connection stays usable: it is answered, and still has no device.
    let error = client
        .request_error(Body::PrekeyCount(PrekeyCount {}))
        .await;
    assert_eq!(code(&error), ErrorCode::Unauthenticated, "{error}");
    let error = client
        .request_error(Body::Register(register_request("dave", 4, 1)))
        .await;
    assert_eq!(code(&error), ErrorCode::RateLimited, "{error}");
    client.close().await;

    // Nothing of the refused registration was stored: no account, and its key is no device.
    let error = alice
        .client
        .request_error(Body::GetBundles(GetBundles {
            username: "dave".into(),
            device_id: None,
        }))
        .await;
    assert_eq!(code(&error), ErrorCode::NotFound, "{error}");
    let mut again = TestClient::connect(&server, &key).await;
    let error = again.request_error(Body::PrekeyCount(PrekeyCount {})).await;
    assert_eq!(code(&error), ErrorCode::Unauthenticated, "{error}");
    again.close().await;
}

#[tokio::test]
async fn a_device_that_reconnects_as_soon_as_it_registered_keeps_the_new_connection() {
    let server = TestServer::start().await;
    // A client that has its registration answered may connect again as the device at once
    // (as the load generator does): the new connection replaces the one it registered on,
    // never the other way round.
    for i in 0..20 {
        let key = StaticKeypair::generate();
        let mut first = TestClient::connect(&server, &key).await;
        let registered = first
            .request(Body::Register(register_request(&format!("quick{i}"), 3, 1)))
            .await;
        assert!(
            matches!(registered, response::Body::Registered(_)),
            "{registered:?}"
        );
        let mut second = TestClient::connect(&server, &key).await;
        second.prove().await;
        let (_, frame) = first.frames_until_close().await;
        assert_eq!(frame.map(|f| u16::from(f.code)), Some(4000), "round {i}");
        second.queue_empty().await;
        match second.request(Body::PrekeyCount(PrekeyCount {})).await {
            response::Body::PrekeyCounts(c) => assert_eq!(c.one_time, 1),
            other => panic!("{other:?}"),
        }
        second.close().await;
    }
}
