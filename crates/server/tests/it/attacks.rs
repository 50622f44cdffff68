//! Attacks on connections, each against a real `sotto-server` process the way an attacker
//! would make them, with honest clients served throughout: request headers sent a byte at a
//! time, more connections from one address than it may hold, a replayed first handshake
//! message, and large requests pipelined on one connection.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sotto_api::{request::Body, response, SendMessage};
use sotto_channel::ClientHandshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Where attackers connect from: another loopback address than the honest clients'
/// (127.0.0.1), so that the per-address cap tells them apart.
const ATTACKER: &str = "127.0.0.2";

/// How often a slow client sends one more byte of its request: far more often than any idle
/// timeout, so that only a deadline that bytes do not extend can close it.
const TRICKLE: Duration = Duration::from_millis(50);

/// Close code "policy violation" (RFC 6455).
const POLICY_VIOLATION: u16 = 1008;

/// A TCP connection to `server` from the loopback address `source`.
async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends a WebSocket upgrade request that never ends, one byte every [`TRICKLE`], until the
/// server closes the socket.
async fn trickle(mut stream: TcpStream) {
    let start = b"GET /v1/ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nX-Slow: ";
    let mut sent = 0;
    let mut tick = tokio::time::interval(TRICKLE);
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tick.tick() => {
                let byte = start.get(sent).copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
                sent += 1;
            }
        }
    }
}

#[tokio::test]
async fn slow_request_headers_are_cut_off_while_honest_clients_are_served() {
    const PER_ADDRESS: usize = 8;
    let server = ProcessServer::start(&[
        "--max-connections",
        "32",
        "--max-connections-per-address",
        &PER_ADDRESS.to_string(),
        "--request-timeout-secs",
        "1",
    ]);
    let addr = server.addr();

    // The attack: three times as many slow sockets from one address as it may hold, each
    // opened again as soon as it is closed, until the attack stops. Each stops only once the
    // server has closed its last socket: bytes keep arriving on it, so only the request
    // deadline can.
    let (stop_tx, stop) = watch::channel(false);
    let attackers: Vec<_> = (0..3 * PER_ADDRESS)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut closed = 0u32;
                loop {
                    trickle(connect_from(ATTACKER, addr).await).await;
                    closed += 1;
                    if *stop.borrow() {
                        return closed;
                    }
                }
            })
        })
        .collect();

    // Meanwhile honest clients connect, register and exchange messages, and `/health`
    // answers.
    let mut alice = Device::register(&server, "alice", 1).await;
    let mut bob = Device::register(&server, "bob", 1).await;
    for round in 0..5 {
        let mut newcomer = Device::register(&server, &format!("newcomer{round}"), 1).await;
        newcomer.send_ok(&alice, b"hello").await;
        let hello = alice.client.next_envelope().await;
        assert_eq!(hello.source, format!("newcomer{round}"));
        alice.ack(vec![hello.id]).await;
        newcomer.client.close().await;

        bob.reconnect(&server).await;
        assert!(bob.client.drain().await.is_empty());
        let text = format!("round {round}");
        alice.send_ok(&bob, text.as_bytes()).await;
        let envelope = bob.client.next_envelope().await;
        assert_eq!(envelope.content, text.as_bytes());
        bob.ack(vec![envelope.id]).await;
        bob.send_ok(&alice, text.as_bytes()).await;
        let envelope = alice.client.next_envelope().await;
        assert_eq!(envelope.content, text.as_bytes());
        alice.ack(vec![envelope.id]).await;

        assert_eq!(http_get(addr, "/health", &[]).await.0, 200);
    }

    stop_tx.send_replace(true);
    for attacker in attackers {
        let closed = tokio::time::timeout(PATIENCE, attacker)
            .await
            .expect("the server closes every slow socket")
            .unwrap();
        assert!(closed >= 1);
    }
    assert_eq!(http_get(addr, "/health", &[]).await.0, 200);
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_once() {
    const PER_ADDRESS: usize = 4;
    // A request deadline far beyond the test, so that only the cap closes anything.
    let server = ProcessServer::start(&[
        "--max-connections-per-address",
        &PER_ADDRESS.to_string(),
        "--request-timeout-secs",
        "3600",
    ]);
    let addr = server.addr();

    // The attacker's address holds all its slots with sockets that send nothing (accepted in
    // the order they connected) ...
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(connect_from(ATTACKER, addr).await);
    }
    // ... so one more from it is closed unanswered.
    let extra = connect_from(ATTACKER, addr).await;
    assert_eq!(http_get_on(extra, "/health", &[]).await, None);

    // Other addresses are served.
    assert_eq!(http_get(addr, "/health", &[]).await.0, 200);
    let mut alice = Device::register(&server, "alice", 1).await;
    let bob = Device::register(&server, "bob", 1).await;
    alice.send_ok(&bob, b"hi").await;

    // A closed socket frees its address's slot.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let stream = connect_from(ATTACKER, addr).await;
        if let Some((status, _)) = http_get_on(stream, "/health", &[]).await {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot of a closed socket is never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_replayed_first_handshake_message_takes_nothing_over() {
    let server = ProcessServer::start(&[]);
    let mut alice = Device::register(&server, "alice", 1).await;
    let mut bob = Device::register(&server, "bob", 1).await;

    // Bob connects again; an attacker has captured the first message of his handshake.
    let (handshake, first) = ClientHandshake::start(&bob.key, Some(&server.key())).unwrap();
    let captured = first.clone();
    bob.client = TestClient::connect_with(&server, handshake, first).await;
    bob.client.prove().await;
    bob.client.queue_empty().await;

    // The replay: the server answers the handshake (for keys the attacker does not hold).
    let mut replayed = websocket(&server).await;
    replayed.send(Message::binary(captured)).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, replayed.next())
        .await
        .expect("the server answers the handshake")
        .unwrap()
        .unwrap();
    assert!(matches!(reply, Message::Binary(_)), "{reply:?}");

    // While it is open, bob's own connection keeps his envelopes.
    alice.send_ok(&bob, b"while replayed").await;
    assert_eq!(bob.client.next_envelope().await.content, b"while replayed");

    // The replaying socket gets nothing more, and is closed for sending no channel message.
    let close = tokio::time::timeout(PATIENCE, async {
        loop {
            match replayed.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("the replaying socket received {other:?}"),
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server closes the replaying socket")
    .expect("a close frame");
    assert_eq!(u16::from(close.code), POLICY_VIOLATION);

    // Bob's connection was never replaced: still open, still pushed to.
    alice.send_ok(&bob, b"after the replay").await;
    assert_eq!(
        bob.client.next_envelope().await.content,
        b"after the replay"
    );
    match bob
        .client
        .request(Body::PrekeyCount(sotto_api::PrekeyCount {}))
        .await
    {
        response::Body::PrekeyCounts(counts) => assert_eq!(counts.one_time, 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn large_requests_pipelined_on_one_connection_are_all_answered() {
    // Far more request bytes than a connection may have in progress at once: the server
    // stops reading while its budget is spent, and carries on as requests finish.
    const SENDS: usize = 48;
    let server = ProcessServer::start(&[]);
    let mut alice = Device::register(&server, "alice", 1).await;
    let mut bob = Device::register(&server, "bob", 1).await;
    let contents: Vec<Vec<u8>> = (0..SENDS)
        .map(|i| {
            let mut content = random(sotto_api::MAX_ENVELOPE_CONTENT_BYTES);
            content[0] = i as u8;
            content
        })
        .collect();
    let mut ids = Vec::new();
    for content in &contents {
        let body = Body::Send(SendMessage {
            destination: "bob".into(),
            envelopes: vec![envelope(1, bob.registration_id, content)],
            own_envelopes: vec![],
        });
        ids.push(alice.client.start_request(body).await);
    }
    for id in ids {
        match alice.client.response(id).await {
            response::Body::Sent(_) => {}
            other => panic!("{other:?}"),
        }
    }
    for content in &contents {
        let envelope = bob.client.next_envelope().await;
        assert!(envelope.content == *content, "envelopes in order, intact");
        bob.ack(vec![envelope.id]).await;
    }
}
