//! The exit codes scripts rely on, each caused for real.

use crate::harness::{exit, World};

#[test]
fn wrong_passphrase_and_wrong_key_file() {
    let world = World::start();
    let alice = world.registered("alice");
    let mut wrong = alice.clone();
    wrong.passphrase = "not alice's passphrase".into();
    let outcome = wrong.run(&["recv"]).expect_code(exit::WRONG_KEY);
    assert!(outcome.stderr.contains("passphrase"), "{}", outcome.stderr);
    assert!(!outcome.stderr.contains(&alice.passphrase));
    alice.run(&["recv"]).success();

    // A profile under a key file: the file is created by register, a different file fails.
    let mut carol = world.user("carol");
    carol.key_file = Some(world.dir.path().join("carol.key"));
    carol.register().success();
    assert_eq!(
        std::fs::metadata(carol.key_file.as_ref().unwrap())
            .unwrap()
            .len(),
        32
    );
    carol.run(&["recv"]).success();
    let mut wrong = carol.clone();
    let other_key = world.dir.path().join("other.key");
    std::fs::write(&other_key, [7u8; 32]).unwrap();
    wrong.key_file = Some(other_key);
    wrong.run(&["recv"]).expect_code(exit::WRONG_KEY);
    // The passphrase does not open a key-file profile either.
    wrong.key_file = None;
    wrong.run(&["recv"]).expect_code(exit::WRONG_KEY);
}

#[test]
fn unknown_user_and_missing_profile() {
    let world = World::start();
    let alice = world.registered("alice");
    let outcome = alice.send("nobody", "hello?").expect_code(exit::NOT_FOUND);
    assert!(outcome.stderr.contains("nobody"), "{}", outcome.stderr);
    assert!(
        !outcome.stderr.contains("hello?"),
        "no message text in errors"
    );

    let ghost = world.user("ghost");
    let outcome = ghost.run(&["recv"]).expect_code(exit::NOT_FOUND);
    assert!(outcome.stderr.contains("register"), "{}", outcome.stderr);
    ghost.run(&["contacts"]).expect_code(exit::NOT_FOUND);
}

#[test]
fn username_taken_and_profile_exists_are_refused() {
    let world = World::start();
    let alice = world.registered("alice");
    let mut impostor = world.user("impostor");
    impostor.name = "alice".into();
    impostor.register().expect_code(exit::REFUSED);
    // Nothing was created that a retry would trip over, and Alice still works.
    alice.run(&["recv"]).success();
    // Registering again into an existing profile.
    alice.register().expect_code(exit::REFUSED);
}

#[test]
fn server_not_running() {
    let mut world = World::start();
    let alice = world.registered("alice");
    world.stop_server();
    let outcome = alice.run(&["recv"]).expect_code(exit::CONNECTION);
    assert!(outcome.stderr.contains("sotto: "), "{}", outcome.stderr);

    // Registering against an address where nothing listens.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let mut bob = world.user("bob");
    bob.server = addr.to_string();
    bob.server_key = None;
    bob.register().expect_code(exit::CONNECTION);
}

#[test]
fn a_different_server_key_is_refused() {
    let mut world = World::start();
    // Alice pins the key on first use, Bob was given it.
    let mut alice = world.user("alice");
    alice.server_key = None;
    alice.register().success();
    let bob = world.registered("bob");

    // A wrong --server-key: the handshake cannot succeed with the real server.
    let wrong = "11".repeat(32);
    let outcome = alice
        .run(&["--server", &world.url, "--server-key", &wrong, "recv"])
        .expect_code(exit::SERVER_KEY_MISMATCH);
    assert!(outcome.stderr.contains("key"), "{}", outcome.stderr);
    alice.run(&["recv"]).success();

    // Another server (another key) at the same address.
    world.replace_server();
    alice.run(&["recv"]).expect_code(exit::SERVER_KEY_MISMATCH);
    bob.run(&["recv"]).expect_code(exit::SERVER_KEY_MISMATCH);
}

#[test]
fn usage_errors() {
    let world = World::start();
    let alice = world.user("alice");
    // Clap's own errors.
    alice.run(&["send", "bob"]).expect_code(exit::USAGE);
    alice.run(&["frobnicate"]).expect_code(exit::USAGE);
    // Ours: a username the server would refuse, a bad server address or key.
    alice
        .run(&["register", "Not A Name"])
        .expect_code(exit::USAGE);
    let mut bad = world.user("alice");
    bad.server = "ftp://example.org".into();
    bad.register().expect_code(exit::USAGE);
    let mut bad = world.user("alice");
    bad.server_key = Some("abcd".into());
    bad.register().expect_code(exit::USAGE);
    assert!(!bad.profile.exists(), "nothing is created on a usage error");
    // No way to get the store key: no key file, no passphrase, standard input not a terminal.
    let outcome = alice
        .command(&["register", "alice"])
        .env_remove("SOTTO_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(outcome.status.code(), Some(exit::USAGE));

    let registered = world.registered("carol");
    registered.send("alice", "   ").expect_code(exit::USAGE);
    registered
        .run(&["send", "carol", "-"])
        .expect_code(exit::USAGE);
}

#[test]
fn help_lists_the_exit_codes() {
    let outcome = std::process::Command::new(env!("CARGO_BIN_EXE_sotto"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(outcome.status.code(), Some(exit::OK));
    let help = String::from_utf8(outcome.stdout).unwrap();
    for line in [
        "0  success",
        "3  cannot reach the server",
        "4  wrong passphrase or key file",
        "5  unknown user",
        "6  refused",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }
}
