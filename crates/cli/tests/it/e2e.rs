//! Two users, messages both ways, one of them offline while the other sends.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{contains, files_under, msgs, parse_message_line, World};

/// Longer than any healthy delivery; only stops a broken build from hanging the run.
const LINE_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn messages_both_ways_and_offline_delivery_exactly_once_in_order() {
    let world = World::start();
    let alice = world.registered("alice");
    let bob = world.registered("bob");

    // Alice writes first: Bob's prekeys set the session up.
    alice.send("bob", "hello bob, it is alice").success();
    assert_eq!(bob.recv(), msgs("alice", &["hello bob, it is alice"]));
    bob.send("alice", "hi alice!").success();
    assert_eq!(alice.recv(), msgs("bob", &["hi alice!"]));

    // Bob is offline (no sotto process of his runs) while Alice sends several messages.
    let offline: Vec<String> = (1..=7)
        .map(|i| format!("offline message number {i}"))
        .collect();
    for text in &offline {
        alice.send("bob", text).success();
    }
    // A message from standard input, with a line break the output escapes.
    alice
        .run_with_input(&["send", "bob", "-"], Some("line one\nline two\n"))
        .success();

    let expected: Vec<&str> = offline
        .iter()
        .map(String::as_str)
        .chain(["line one\\nline two"])
        .collect();
    assert_eq!(
        bob.recv(),
        msgs("alice", &expected),
        "all of them, in order"
    );
    assert_eq!(bob.recv(), Vec::new(), "delivered exactly once");

    // And back again, after the other direction's burst.
    bob.send("alice", "got all eight").success();
    assert_eq!(alice.recv(), msgs("bob", &["got all eight"]));
    assert_eq!(alice.recv(), Vec::new());

    // The server stored and logged none of the plaintexts; the profiles are encrypted at rest.
    let plaintexts = [
        "hello bob, it is alice",
        "hi alice!",
        "offline message number",
        "got all eight",
    ];
    for (path, bytes) in world.server_bytes() {
        for text in plaintexts {
            assert!(
                !contains(&bytes, text.as_bytes()),
                "{text:?} in {}",
                path.display()
            );
        }
    }
    for profile in [&alice.profile, &bob.profile] {
        for path in files_under(profile) {
            let bytes = std::fs::read(&path).unwrap();
            for text in plaintexts {
                assert!(
                    !contains(&bytes, text.as_bytes()),
                    "{text:?} in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn recv_follow_prints_live_messages_until_interrupted() {
    let world = World::start();
    let alice = world.registered("alice");
    let bob = world.registered("bob");
    alice.send("bob", "before bob listens").success();

    let mut follower = bob.spawn(&["recv", "--follow"]);
    let (stdout_tx, stdout_rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = stdout_tx.send(line);
        }
    });
    let (stderr_tx, stderr_rx) = mpsc::channel();
    let stderr = follower.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = stderr_tx.send(line);
        }
    });

    let line = stdout_rx
        .recv_timeout(LINE_DEADLINE)
        .expect("the waiting message is printed");
    assert_eq!(
        parse_message_line(&line),
        ("alice".into(), "before bob listens".into())
    );
    // Once the mailbox is drained it says it waits; what comes now is pushed live.
    loop {
        let line = stderr_rx
            .recv_timeout(LINE_DEADLINE)
            .expect("recv --follow says it waits");
        if line.starts_with("waiting for messages") {
            break;
        }
    }
    for text in ["live one", "live two"] {
        alice.send("bob", text).success();
        let line = stdout_rx
            .recv_timeout(LINE_DEADLINE)
            .expect("a live message is printed");
        assert_eq!(parse_message_line(&line), ("alice".into(), text.into()));
    }

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = follower.wait().unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C ends recv --follow cleanly");
    // Everything printed was acknowledged: nothing comes again.
    assert_eq!(bob.recv(), Vec::new());
}
