//! Trust on first use of the server's key (XX), and refusing a different one later.

use sotto_client::{Client, ClientError, ServerInfo};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_key_learnt_on_first_use_is_pinned() {
    let first_data = tempfile::tempdir().unwrap();
    let server = TestServer::start_new(first_data.path()).await;
    let addr = server.addr;
    let first_key = server.key;
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    // Without the server's key: XX, and the key learnt is pinned.
    let alice = alice_profile
        .register(server.info_unpinned(), "alice")
        .await;
    let bob = bob_profile.register(server.info(), "bob").await;
    alice.close().await;
    drop(alice);
    // Reopening uses the pinned key (IK), also when the URL is given again without a key.
    let alice = Client::open(
        &alice_profile.dir,
        alice_profile.key(),
        Some(server.info_unpinned()),
    )
    .await
    .unwrap();
    alice.send_text("bob", "pinned").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "pinned");
    alice.close().await;
    drop(alice);
    bob.close().await;
    server.stop().await;

    // Another server (another key) answers at the same address.
    let second_data = tempfile::tempdir().unwrap();
    let impostor = TestServer::start(second_data.path(), addr).await;
    assert_ne!(impostor.key, first_key);
    for server in [None, Some(impostor.info_unpinned())] {
        let refused = Client::open(&alice_profile.dir, alice_profile.key(), server).await;
        assert!(
            matches!(refused, Err(ClientError::ServerKeyChanged)),
            "{refused:?}"
        );
    }
    // A registration told to expect another key than the server's refuses too, and leaves no
    // profile behind.
    let carol = Profile::new();
    let wrong = ServerInfo {
        url: impostor.url(),
        key: Some(first_key),
        ca_cert: None,
    };
    let refused = Client::register(&carol.dir, carol.key(), wrong, "carol").await;
    assert!(
        matches!(refused, Err(ClientError::ServerKeyChanged)),
        "{refused:?}"
    );
    assert!(matches!(
        Client::open(&carol.dir, carol.key(), None).await,
        Err(ClientError::NoProfile)
    ));
    impostor.stop().await;
}
