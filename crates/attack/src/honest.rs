//! Honest users: real `sotto-client` engines, each with its own profile in the target's
//! temporary directory, connecting from `127.0.0.1`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sotto_client::{Client, ClientError, Event, StoreKey};

use crate::target::Target;
use crate::ProbeError;

/// A fresh username with `prefix` (usernames are unique per server; the counter keeps them
/// so within a run).
pub(crate) fn username(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Registers `name` with a new profile.
pub(crate) async fn register(target: &Target, name: &str) -> Result<Client, ClientError> {
    let profile = target.profiles().join(name);
    let key = StoreKey::KeyFile(target.profiles().join(format!("{name}.key")));
    Client::register(&profile, key, target.info(), name).await
}

/// Waits for the next message, skipping other events; `None` if the client's connection
/// closed for good or nothing came within `within`.
pub(crate) async fn next_message(
    client: &Client,
    within: Duration,
) -> Option<sotto_client::ReceivedMessage> {
    let wait = async {
        loop {
            match client.next_event().await? {
                Event::Message(message) => return Some(message),
                _ => continue,
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok().flatten()
}

/// One honest conversation from scratch: two new accounts, one message from the first to the
/// second, received. How long it took, or why it failed.
pub(crate) async fn converse(target: &Target, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = async {
        let alice = register(target, &username("honesta"))
            .await
            .map_err(|e| e.to_string())?;
        let bob = register(target, &username("honestb"))
            .await
            .map_err(|e| e.to_string())?;
        let sent = alice.send_text(bob.username(), "hello").await;
        let received = match sent {
            Ok(()) => next_message(&bob, within).await.is_some(),
            Err(_) => false,
        };
        alice.close().await;
        bob.close().await;
        sent.map_err(|e| e.to_string())?;
        if received {
            Ok(started.elapsed())
        } else {
            Err("the message did not arrive".to_owned())
        }
    };
    match tokio::time::timeout(within, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("not done within {} s", within.as_secs())),
    }
}

/// [`register`], where failure is the probe's error.
pub(crate) async fn register_ok(target: &Target, name: &str) -> Result<Client, ProbeError> {
    Ok(register(target, name).await?)
}
