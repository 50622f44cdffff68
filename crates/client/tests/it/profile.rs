//! Profiles: passphrases, wrong keys, one profile per directory.

use sotto_client::{Client, ClientError, StoreKey};
use zeroize::Zeroizing;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_profile_opens_only_with_its_passphrase() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("dave");
    let passphrase = |p: &str| StoreKey::Passphrase(Zeroizing::new(p.to_owned()));
    let dave = Client::register(&profile, passphrase("open sesame"), server.info(), "dave")
        .await
        .unwrap();
    dave.close().await;
    drop(dave);

    assert!(matches!(
        Client::open(&profile, passphrase("open sesame!"), None).await,
        Err(ClientError::WrongKey)
    ));
    let key_file = dir.path().join("some.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    assert!(matches!(
        Client::open(&profile, StoreKey::KeyFile(key_file), None).await,
        Err(ClientError::WrongKey)
    ));
    assert!(matches!(
        Client::register(&profile, passphrase("other"), server.info(), "dave2").await,
        Err(ClientError::ProfileExists)
    ));
    assert!(matches!(
        Client::open(&dir.path().join("nobody"), passphrase("x"), None).await,
        Err(ClientError::NoProfile)
    ));
    let dave = Client::open(&profile, passphrase("open sesame"), None)
        .await
        .unwrap();
    assert_eq!((dave.username(), dave.device_id()), ("dave", 1));
    dave.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_leaves_no_profile() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(data.path()).await;
    let (first, second) = (Profile::new(), Profile::new());
    let erin = first.register(server.info(), "erin").await;
    // The name is taken: the server refuses, and nothing is written locally.
    let refused = Client::register(&second.dir, second.key(), server.info(), "erin").await;
    assert!(
        matches!(&refused, Err(ClientError::Server(e)) if e.code() == sotto_api::ErrorCode::Conflict),
        "{refused:?}"
    );
    assert!(matches!(
        Client::open(&second.dir, second.key(), None).await,
        Err(ClientError::NoProfile)
    ));
    // A name the server would refuse is refused before connecting.
    assert!(matches!(
        Client::register(&second.dir, second.key(), server.info(), "Erin").await,
        Err(ClientError::InvalidUsername(_))
    ));
    // The same directory can then be used for another name.
    let frank = second.register(server.info(), "frank").await;
    erin.send_text("frank", "hello").await.unwrap();
    assert_eq!(next_message(&frank).await.text, "hello");
    erin.close().await;
    frank.close().await;
    server.stop().await;
}
