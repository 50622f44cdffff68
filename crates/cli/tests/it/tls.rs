//! `sotto` against a `sotto-server` that terminates TLS with a certificate of a test CA:
//! `wss://` with `--ca-cert` works both ways; without it, the command fails with a clear
//! error and the connection exit code.

use crate::harness::{exit, msgs, User, World};

/// `first` then `then`.
fn joined<'a>(first: &[&'a str], then: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(then).copied().collect()
}

#[test]
fn wss_with_the_ca_works_and_without_it_fails_clearly() {
    let (world, ca) = World::start_tls();
    assert!(world.url.starts_with("wss://"), "{}", world.url);
    let ca_cert = ca.ca_cert.to_str().unwrap();
    let url = world.url.clone();
    let with_ca = ["--server", url.as_str(), "--ca-cert", ca_cert];

    // Without the CA: refused before anything is registered, and the message says why.
    let mallory = world.user("mallory");
    let refused = mallory.register().expect_code(exit::CONNECTION);
    assert!(refused.stderr.contains("not trusted"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--ca-cert"), "{}", refused.stderr);

    // With it (register takes --server from the harness).
    let alice = world.user("alice");
    let bob = world.user("bob");
    for user in [&alice, &bob] {
        user.run(&["register", &user.name, "--ca-cert", ca_cert])
            .success();
    }
    let run = |user: &User, args: &[&str]| user.run(&joined(args, &with_ca));
    run(&alice, &["send", "bob", "hello over wss"]).success();
    assert_eq!(
        run(&bob, &["recv"]).success().messages(),
        msgs("alice", &["hello over wss"])
    );
    run(&bob, &["send", "alice", "hi alice"]).success();
    assert_eq!(
        run(&alice, &["recv"]).success().messages(),
        msgs("bob", &["hi alice"])
    );

    // The profile remembers the wss:// server but not the CA: without it, a clear failure.
    let refused = alice.run(&["recv"]).expect_code(exit::CONNECTION);
    assert!(refused.stderr.contains("not trusted"), "{}", refused.stderr);
    // And --ca-cert alone, without the server it is for, is a usage error.
    alice
        .run(&["recv", "--ca-cert", ca_cert])
        .expect_code(exit::USAGE);
}
