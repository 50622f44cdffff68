//! Safety numbers, verification and the contact list.

use crate::harness::{exit, World};

/// The 60 digits of `safety-number`'s first line, checking its grouping.
fn digits(stdout: &str) -> String {
    let first = stdout.lines().next().expect("a first line");
    let groups: Vec<&str> = first.split(' ').collect();
    assert_eq!(groups.len(), 12, "12 groups in {first:?}");
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())),
        "{first:?}"
    );
    groups.concat()
}

/// The contact list as (username, rest of the line).
fn contacts(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_owned();
            (name, words.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[test]
fn both_sides_see_the_same_safety_number_and_verify_marks_the_contact() {
    let world = World::start();
    let alice = world.registered("alice");
    let bob = world.registered("bob");
    alice.send("bob", "hello").success();
    bob.recv();

    let from_alice = alice.run(&["safety-number", "bob"]).success();
    let from_bob = bob.run(&["safety-number", "alice"]).success();
    let number = digits(&from_alice.stdout);
    assert_eq!(number.len(), 60);
    assert_eq!(
        number,
        digits(&from_bob.stdout),
        "the same number on both sides"
    );
    // A QR code follows, drawn in half blocks, with the quiet zone as full blocks.
    let qr: Vec<&str> = from_alice.stdout.lines().skip(1).collect();
    assert!(qr.len() > 10, "{}", from_alice.stdout);
    assert!(qr[0].chars().all(|c| c == '█'));
    assert!(qr
        .iter()
        .any(|l| l.contains('▀') || l.contains('▄') || l.contains(' ')));
    let digits_only = alice.run(&["safety-number", "bob", "--no-qr"]).success();
    assert_eq!(digits_only.stdout.lines().count(), 1);

    assert_eq!(
        contacts(&alice.run(&["contacts"]).success().stdout),
        vec![("bob".into(), "not-verified".into())]
    );

    // Declined at the prompt: not verified, exit code 1.
    alice
        .run_with_input(&["verify", "bob"], Some("n\n"))
        .expect_code(exit::OTHER);
    alice
        .run_with_input(&["verify", "bob"], None)
        .expect_code(exit::OTHER);
    assert_eq!(
        contacts(&alice.run(&["contacts"]).success().stdout),
        vec![("bob".into(), "not-verified".into())]
    );

    // Scripted: --yes.
    let verified = alice.run(&["verify", "bob", "--yes"]).success();
    assert_eq!(
        digits(&verified.stdout),
        number,
        "verify shows the number it verifies"
    );
    assert_eq!(
        contacts(&alice.run(&["contacts"]).success().stdout),
        vec![("bob".into(), "verified".into())]
    );

    // Answered at the prompt.
    bob.run_with_input(&["verify", "alice"], Some("y\n"))
        .success();
    assert_eq!(
        contacts(&bob.run(&["contacts"]).success().stdout),
        vec![("alice".into(), "verified".into())]
    );
}

#[test]
fn safety_number_with_a_stranger_is_not_found() {
    let world = World::start();
    let alice = world.registered("alice");
    world.registered("bob");
    // No session and no identity known yet.
    alice
        .run(&["safety-number", "bob"])
        .expect_code(exit::NOT_FOUND);
    alice
        .run(&["verify", "bob", "--yes"])
        .expect_code(exit::NOT_FOUND);
}
