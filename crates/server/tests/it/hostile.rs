//! Hostile input: each gets a clear error or a close, the server keeps serving everyone else,
//! and nothing stored changes.

use futures_util::SinkExt;
use prost::Message as _;
use sotto_api::{
    request::Body, response, Ack, ErrorCode, GetBundles, PrekeyCount, Request, SendMessage,
    UploadPrekeys,
};
use sotto_channel::{ClientHandshake, StaticKeypair};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Close codes the server uses (RFC 6455).
const PROTOCOL_ERROR: u16 = 1002;
const UNSUPPORTED_DATA: u16 = 1003;

async fn close_code(ws: &mut Socket) -> Option<u16> {
    closed(ws).await.map(|frame| u16::from(frame.code))
}

/// Alice and bob, with one message from alice waiting in bob's mailbox: the state that hostile
/// clients must not change.
async fn bystanders(server: &TestServer) -> (Device, Device) {
    let mut alice = Device::register(server, "alice", 3).await;
    let mut bob = Device::register(server, "bob", 3).await;
    bob.client.close().await;
    alice.send_ok(&bob, b"before").await;
    (alice, bob)
}

/// Everything is as [`bystanders`] left it, and the server still serves.
async fn unchanged(server: &TestServer, alice: &mut Device, bob: &mut Device) {
    alice.reconnect(server).await;
    assert!(alice.client.drain().await.is_empty());
    bob.reconnect(server).await;
    let waiting: Vec<Vec<u8>> = bob
        .client
        .drain()
        .await
        .into_iter()
        .map(|e| e.content)
        .collect();
    assert_eq!(waiting, vec![b"before".to_vec()]);
    for device in [&mut *alice, &mut *bob] {
        match device
            .client
            .request(Body::PrekeyCount(PrekeyCount {}))
            .await
        {
            response::Body::PrekeyCounts(c) => assert_eq!((c.one_time, c.one_time_kyber), (3, 3)),
            other => panic!("{other:?}"),
        }
    }
    alice.send_ok(bob, b"after").await;
    assert_eq!(bob.client.next_envelope().await.content, b"after");
}

#[tokio::test]
async fn garbage_before_and_during_the_handshake_closes_the_socket() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = bystanders(&server).await;

    // Garbage as the first message.
    let mut ws = websocket(&server).await;
    ws.send(Message::binary(random(200))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(PROTOCOL_ERROR));
    let mut ws = websocket(&server).await;
    ws.send(Message::binary(Vec::new())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(PROTOCOL_ERROR));

    // Text.
    let mut ws = websocket(&server).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(UNSUPPORTED_DATA));

    // A WebSocket message larger than any Noise message.
    let mut ws = websocket(&server).await;
    let _ = ws.send(Message::binary(random(200_000))).await;
    closed(&mut ws).await;

    // A broken IK handshake: a flipped bit, or the wrong server key.
    let key = StaticKeypair::generate();
    let (_, mut first) = ClientHandshake::start(&key, Some(&server.key)).unwrap();
    let last = first.len() - 1;
    first[last] ^= 1;
    let mut ws = websocket(&server).await;
    ws.send(Message::binary(first)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(PROTOCOL_ERROR));
    let impostor = StaticKeypair::generate().public();
    let (_, first) = ClientHandshake::start(&key, Some(&impostor)).unwrap();
    let mut ws = websocket(&server).await;
    ws.send(Message::binary(first)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(PROTOCOL_ERROR));

    // A broken XX handshake: garbage instead of the client's last message.
    let (_, first) = ClientHandshake::start(&key, None).unwrap();
    let mut ws = websocket(&server).await;
    ws.send(Message::binary(first)).await.unwrap();
    futures_util::StreamExt::next(&mut ws)
        .await
        .unwrap()
        .unwrap(); // the server's reply
    ws.send(Message::binary(random(64))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(PROTOCOL_ERROR));

    unchanged(&server, &mut alice, &mut bob).await;
}

#[tokio::test]
async fn bad_channel_messages_close_and_bad_frames_are_answered() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = bystanders(&server).await;

    // A flipped bit in a channel message poisons the channel: closed, and the request in it
    // (a send from alice's own key) is not carried out.
    let mut client = TestClient::connect(&server, &alice.key).await;
    client.prove().await;
    client.queue_empty().await;
    let send = Request {
        id: 1,
        body: Some(Body::Send(SendMessage {
            destination: "bob".into(),
            envelopes: vec![envelope(1, bob.registration_id, b"forged")],
            own_envelopes: vec![],
        })),
    };
    let mut messages = client.seal(&send.encode_to_vec());
    messages[0][5] ^= 0x10;
    client
        .ws
        .send(Message::binary(messages.remove(0)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut client.ws).await, Some(PROTOCOL_ERROR));

    // Text after the handshake.
    let mut client = TestClient::connect(&server, &alice.key).await;
    client.prove().await;
    client.queue_empty().await;
    client.ws.send(Message::text("{}")).await.unwrap();
    assert_eq!(close_code(&mut client.ws).await, Some(UNSUPPORTED_DATA));

    // Frames that decrypt but are no request: answered with BadRequest, and serving goes on.
    let mut client = TestClient::connect(&server, &StaticKeypair::generate()).await;
    client.send_frame(&[0xff, 0xff, 0xff]).await;
    let error = match client.response(0).await {
        response::Body::Error(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(error.code(), ErrorCode::BadRequest);
    // A request without a body keeps its id.
    client
        .send_frame(&Request { id: 77, body: None }.encode_to_vec())
        .await;
    assert!(matches!(
        client.response(77).await,
        response::Body::Error(e) if e.code() == ErrorCode::BadRequest
    ));
    let error = client
        .request_error(Body::PrekeyCount(PrekeyCount {}))
        .await;
    assert_eq!(error.code(), ErrorCode::Unauthenticated);

    unchanged(&server, &mut alice, &mut bob).await;
}

#[tokio::test]
async fn requests_before_registration_are_unauthenticated_and_change_nothing() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = bystanders(&server).await;
    let mut stranger = TestClient::connect(&server, &StaticKeypair::generate()).await;
    let requests = [
        Body::PrekeyCount(PrekeyCount {}),
        Body::UploadPrekeys(UploadPrekeys {
            one_time_prekeys: one_time_prekeys(1..5),
            ..Default::default()
        }),
        Body::GetBundles(GetBundles {
            username: "alice".into(),
            device_id: None,
        }),
        Body::Send(SendMessage {
            destination: "bob".into(),
            envelopes: vec![envelope(1, bob.registration_id, b"spoofed")],
            own_envelopes: vec![],
        }),
        Body::Ack(Ack {
            envelope_ids: (0..10).collect(),
        }),
    ];
    for request in requests {
        let error = stranger.request_error(request).await;
        assert_eq!(error.code(), ErrorCode::Unauthenticated);
    }
    // Nothing was pushed to the stranger, and it is still connected.
    stranger.assert_quiet().await;
    unchanged(&server, &mut alice, &mut bob).await;
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = bystanders(&server).await;
    let too_many = UploadPrekeys {
        one_time_prekeys: one_time_prekeys(100..(101 + sotto_api::MAX_PREKEYS_PER_UPLOAD as u32)),
        ..Default::default()
    };
    let error = alice
        .client
        .request_error(Body::UploadPrekeys(too_many))
        .await;
    assert_eq!(error.code(), ErrorCode::TooLarge);
    let acks = Ack {
        envelope_ids: (0..=sotto_api::MAX_ACKS_PER_REQUEST as u64).collect(),
    };
    assert_eq!(
        alice.client.request_error(Body::Ack(acks)).await.code(),
        ErrorCode::TooLarge
    );
    let many = Body::Send(SendMessage {
        destination: "bob".into(),
        envelopes: (1..=(sotto_api::MAX_ENVELOPES_PER_SEND as u32 + 1))
            .map(|d| envelope(d, 1, b"x"))
            .collect(),
        own_envelopes: vec![],
    });
    assert_eq!(
        alice.client.request_error(many).await.code(),
        ErrorCode::TooLarge
    );
    unchanged(&server, &mut alice, &mut bob).await;
}

/// Close code "policy violation" (RFC 6455).
const POLICY_VIOLATION: u16 = 1008;

#[tokio::test]
async fn silent_sockets_are_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start_with(|config| {
        config.idle_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    // Nothing sent at all, and a request whose headers never end: both are closed rather
    // than holding their connection slots.
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    for mut stream in [silent, partial] {
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "the server closes an idle socket");
    }
    // The server still serves.
    assert_eq!(server.get("/health").await.0, 200);
}

#[tokio::test]
async fn unregistered_connections_must_register_in_time() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 1).await;
    let dir = server.stop().await;
    let registration_timeout = std::time::Duration::from_millis(100);
    let server = TestServer::start_in(dir, |config| {
        config.registration_timeout = registration_timeout;
    })
    .await;

    let mut stranger = TestClient::connect(&server, &StaticKeypair::generate()).await;
    let frame = closed(&mut stranger.ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), POLICY_VIOLATION);
    assert_eq!(frame.reason.as_str(), "registration timed out");

    // A device's own connection has no such deadline.
    alice.reconnect(&server).await;
    assert!(alice.client.drain().await.is_empty());
    tokio::time::sleep(registration_timeout * 3).await;
    match alice
        .client
        .request(Body::PrekeyCount(PrekeyCount {}))
        .await
    {
        response::Body::PrekeyCounts(c) => assert_eq!(c.one_time, 1),
        other => panic!("{other:?}"),
    }
}
