//! The server is killed with SIGKILL in the middle of a stream of sends and restarted: every
//! message whose send was acknowledged reaches the recipient exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{next_message, World, MESSAGE_TIMEOUT};

/// Acknowledged sends before the kill, and after the restart.
const ACKED_BEFORE_KILL: usize = 40;
const ACKED_AFTER_RESTART: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sends_survive_sigkill_and_arrive_exactly_once() {
    let world = World::new();
    let server = world.start_server("info").await;
    let alice = world.register(&server, "alice").await;
    let bob = world.register(&server, "bob").await;
    alice.send_text("bob", "hello").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "hello");

    // Bob receives all along; every message he reports has been stored and acknowledged.
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let receiving = {
        let (bob, received) = (bob.clone(), Arc::clone(&received));
        tokio::spawn(async move {
            while let Some(event) = bob.next_event().await {
                if let sotto_client::Event::Message(message) = event {
                    received.lock().unwrap().push(message.text);
                }
            }
        })
    };

    // Alice streams numbered messages and remembers which sends were acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let (alice, acked, acked_count, stop) = (
            alice.clone(),
            Arc::clone(&acked),
            Arc::clone(&acked_count),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let text = format!("message {n}");
                n += 1;
                match alice.send_text("bob", &text).await {
                    Ok(()) => {
                        acked.lock().unwrap().push(text);
                        acked_count.fetch_add(1, Ordering::SeqCst);
                    }
                    // Not acknowledged: it may or may not arrive, but never twice.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };

    wait_until(|| acked_count.load(Ordering::SeqCst) >= ACKED_BEFORE_KILL).await;
    server.kill();
    let acked_at_kill = acked_count.load(Ordering::SeqCst);
    let server = world.start_server("info").await;
    wait_until(|| acked_count.load(Ordering::SeqCst) >= acked_at_kill + ACKED_AFTER_RESTART).await;
    stop.store(true, Ordering::SeqCst);
    sending.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    wait_until(|| {
        let received = received.lock().unwrap();
        acked.iter().all(|text| received.contains(text))
    })
    .await;
    // Give redeliveries a moment to show up, if the client were to report any.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bob.close().await;
    alice.close().await;
    receiving.await.unwrap();

    let mut counts = HashMap::new();
    for text in received.lock().unwrap().iter() {
        *counts.entry(text.clone()).or_insert(0) += 1;
    }
    for text in &acked {
        assert_eq!(
            counts.get(text),
            Some(&1),
            "{text} was acknowledged: it arrives exactly once"
        );
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "no message arrives twice: {counts:?}"
    );
    // And Bob's stored history agrees with what he was told.
    let bob = world.open("bob").await;
    let history = bob.history("alice", 10_000).unwrap();
    for text in &acked {
        assert_eq!(
            history
                .iter()
                .filter(|e| !e.outgoing && &e.text == text)
                .count(),
            1
        );
    }
    bob.close().await;
    drop(server);
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + 4 * MESSAGE_TIMEOUT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
