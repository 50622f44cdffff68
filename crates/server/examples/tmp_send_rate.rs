//! Temporary (server helper): S senders each send M messages sequentially to one receiver.
#![allow(missing_docs, clippy::unwrap_used)]
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sotto_api::*;
use sotto_channel::*;
use tokio_tungstenite::tungstenite::Message;
type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct C { ws: Ws, tx: ChannelSender, rx: ChannelReceiver }
impl C {
    async fn connect(url: &str, key: &PublicKey) -> C {
        let device = StaticKeypair::generate();
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (hs, first) = ClientHandshake::start(&device, Some(key)).unwrap();
        ws.send(Message::binary(first)).await.unwrap();
        let reply = match ws.next().await.unwrap().unwrap() { Message::Binary(b) => b, _ => panic!() };
        let (tx, rx) = hs.finish(&reply).unwrap().channel.split();
        C { ws, tx, rx }
    }
    async fn send(&mut self, r: Request) { for m in self.tx.seal(&r.encode_to_vec()).unwrap() { self.ws.send(Message::binary(m)).await.unwrap(); } }
    async fn frame(&mut self) -> ServerFrame { loop { if let Message::Binary(b) = self.ws.next().await.unwrap().unwrap() { if let Some(f) = self.rx.open(&b).unwrap() { return ServerFrame::decode_frame(&f).unwrap(); } } } }
    async fn register(&mut self, name: &str) {
        let mut ec = vec![5u8]; ec.extend([7u8; 32]);
        let mut ky = vec![8u8]; ky.extend([7u8; 1568]);
        let reg = Register { username: name.into(), identity_key: ec.clone(), registration_id: 1,
            signed_prekey: Some(SignedPrekey { id: 1, public_key: ec, signature: vec![0; 64] }),
            last_resort_kyber: Some(SignedPrekey { id: 1, public_key: ky, signature: vec![0; 64] }),
            one_time_prekeys: vec![], one_time_kyber: vec![] };
        self.send(Request { id: 1, body: Some(request::Body::Register(reg)) }).await;
        self.frame().await; self.frame().await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].clone();
    let key = PublicKey::from_hex(&args[2]).unwrap();
    let senders: usize = args[3].parse().unwrap();
    let each: usize = args[4].parse().unwrap();
    let tag = &args[5];
    let mut rcv = C::connect(&url, &key).await;
    rcv.register(&format!("r{tag}")).await;
    let mut cs = Vec::new();
    for i in 0..senders { let mut c = C::connect(&url, &key).await; c.register(&format!("s{tag}x{i}")).await; cs.push(c); }
    let start = std::time::Instant::now();
    let dest = format!("r{tag}");
    let recv = tokio::spawn(async move {
        let mut n = 0; let mut ids = Vec::new();
        while n < senders * each { if let Some(server_frame::Kind::Push(Push { kind: Some(push::Kind::Envelope(e)) })) = rcv.frame().await.kind { n += 1; ids.push(e.id); if ids.len() == 500 { rcv.send(Request { id: 9, body: Some(request::Body::Ack(Ack { envelope_ids: std::mem::take(&mut ids) })) }).await; } } }
        n
    });
    let mut ts = Vec::new();
    for mut c in cs { let dest = dest.clone(); ts.push(tokio::spawn(async move {
        for j in 0..each {
            c.send(Request { id: j as u64 + 10, body: Some(request::Body::Send(SendMessage { destination: dest.clone(), envelopes: vec![OutgoingEnvelope { device_id: 1, registration_id: 1, r#type: 2, content: vec![1; 200] }], own_envelopes: vec![] })) }).await;
            match c.frame().await.kind { Some(server_frame::Kind::Response(Response { body: Some(response::Body::Sent(_)), .. })) => {}, other => panic!("{other:?}") }
        }
    })); }
    for t in ts { t.await.unwrap(); }
    let sent = start.elapsed();
    let n = recv.await.unwrap();
    println!("{n} messages; sent in {:?} = {:.0} msg/s; all delivered after {:?}", sent, n as f64 / sent.as_secs_f64(), start.elapsed());
}
