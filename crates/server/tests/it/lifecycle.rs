//! The plain HTTP routes, graceful shutdown, and a restart on the same data.

use sotto_api::{request::Body, response, server_frame, SendMessage};

use crate::support::*;

/// WebSocket close code "going away".
const GOING_AWAY: u16 = 1001;

#[tokio::test]
async fn health_metrics_and_root() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/health").await, (200, "ok\n".into()));
    let (status, root) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(root.contains("sotto-server"));
    let (status, _) = server.get("/v1/ws").await;
    assert!(
        (400..500).contains(&status),
        "no upgrade, no WebSocket: {status}"
    );
    assert_eq!(server.get("/nothing").await.0, 404);

    let mut alice = Device::register(&server, "alice", 0).await;
    let bob = Device::register(&server, "bob", 0).await;
    alice.send_ok(&bob, b"counted").await;
    assert_eq!(server.metric("sotto_connections_open").await, 2);
    assert_eq!(server.metric("sotto_envelopes_stored_total").await, 1);
    assert_eq!(server.metric("sotto_commit_batches_total").await, 1);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("sotto_requests_total{kind=\"register\",outcome=\"ok\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("sotto_requests_total{kind=\"send\",outcome=\"ok\"} 1\n"));
    assert!(metrics.contains("sotto_commit_batch_envelopes_count 1\n"));
    assert!(!metrics.contains("alice") && !metrics.contains("counted"));
}

#[tokio::test]
async fn graceful_shutdown_closes_connections_and_keeps_everything() {
    let server = TestServer::start().await;
    let key = server.key;
    let mut alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    bob.client.close().await;
    // Sends in flight while the server stops are answered or refused, never lost silently.
    let mut ids = Vec::new();
    for i in 0..20u8 {
        let send = Body::Send(SendMessage {
            destination: "bob".into(),
            envelopes: vec![envelope(1, bob.registration_id, &[i])],
            own_envelopes: vec![],
        });
        ids.push(alice.client.start_request(send).await);
    }
    let first = alice.client.response(ids[0]).await;
    assert!(matches!(first, response::Body::Sent(_)), "{first:?}");

    let stopping = tokio::spawn(server.stop());
    // Requests the server had read are answered before the close, which says "going away";
    // the rest are not answered, so the client knows they may not have been stored.
    let mut acknowledged = vec![0u8];
    let (frames, close) = alice.client.frames_until_close().await;
    for frame in frames {
        let Some(server_frame::Kind::Response(response)) = frame.kind else {
            continue;
        };
        let i = ids
            .iter()
            .position(|id| *id == response.id)
            .expect("a request's id");
        match response.body.unwrap() {
            response::Body::Sent(_) => acknowledged.push(i as u8),
            response::Body::Error(e) => assert_eq!(e.code(), sotto_api::ErrorCode::Internal),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(GOING_AWAY));
    let dir = stopping.await.unwrap();

    // Restarted on the same data: the same key, and every acknowledged send is delivered.
    let server = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(server.key, key);
    bob.reconnect(&server).await;
    let delivered: Vec<u8> = bob
        .client
        .drain()
        .await
        .iter()
        .map(|e| e.content[0])
        .collect();
    for i in &acknowledged {
        assert!(delivered.contains(i), "acknowledged send {i} was delivered");
    }
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "each once, in order: {delivered:?}"
    );
    server.stop().await;
}
