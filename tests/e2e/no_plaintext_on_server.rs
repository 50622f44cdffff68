//! After a conversation, the server's database files and its most verbose log contain none of
//! the plaintexts; neither do the clients' encrypted profiles.

use crate::harness::{contains, files_under, next_message, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_data_and_logs_hold_no_plaintext() {
    let world = World::new();
    let server = world.start_server("trace").await;
    let alice = world.register(&server, "alice").await;
    let bob = world.register(&server, "bob").await;

    let to_bob: Vec<String> = (0..5)
        .map(|i| format!("secret-for-bob-{i}-kumquat"))
        .collect();
    let to_alice: Vec<String> = (0..5)
        .map(|i| format!("secret-for-alice-{i}-persimmon"))
        .collect();
    for text in &to_bob {
        alice.send_text("bob", text).await.unwrap();
    }
    // One message waits in the mailbox while Bob is offline.
    bob.close().await;
    alice
        .send_text("bob", "offline-secret-rambutan")
        .await
        .unwrap();
    let bob = world.open("bob").await;
    let mut got = Vec::new();
    for _ in 0..=to_bob.len() {
        got.push(next_message(&bob).await.text);
    }
    assert!(got.contains(&"offline-secret-rambutan".to_owned()));
    for text in &to_alice {
        bob.send_text("alice", text).await.unwrap();
        assert_eq!(&next_message(&alice).await.text, text);
    }
    alice.close().await;
    bob.close().await;
    assert!(server.stop(), "the server shuts down cleanly");

    let mut server_files = files_under(&world.data_dir());
    server_files.push((world.log_path(), std::fs::read(world.log_path()).unwrap()));
    assert!(server_files.iter().any(|(_, bytes)| !bytes.is_empty()));
    let profiles = files_under(&world.dir.path().join("profiles"));
    for plaintext in to_bob
        .iter()
        .chain(&to_alice)
        .map(String::as_str)
        .chain(["offline-secret-rambutan"])
    {
        for (path, bytes) in server_files.iter().chain(&profiles) {
            assert!(
                !contains(bytes, plaintext.as_bytes()),
                "{} contains a plaintext",
                path.display()
            );
        }
    }
    assert!(world.profile_dir("alice").exists());
}
