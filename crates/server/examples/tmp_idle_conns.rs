//! Temporary (server helper): opens N registered idle connections and prints the server's RSS.
#![allow(missing_docs, clippy::unwrap_used)]
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sotto_api::*;
use sotto_channel::*;
use tokio_tungstenite::tungstenite::Message;

fn rss(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = &args[1];
    let key = PublicKey::from_hex(&args[2]).unwrap();
    let n: usize = args[3].parse().unwrap();
    let pid = &args[4];
    println!("rss before: {} KiB", rss(pid));
    let mut sockets = Vec::new();
    let mut tasks = Vec::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..n {
        let url = url.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let device = StaticKeypair::generate();
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let (hs, first) = ClientHandshake::start(&device, Some(&key)).unwrap();
            ws.send(Message::binary(first)).await.unwrap();
            let reply = match ws.next().await.unwrap().unwrap() { Message::Binary(b) => b, _ => panic!() };
            let (mut tx, mut rx) = hs.finish(&reply).unwrap().channel.split();
            let mut ec = vec![5u8]; ec.extend([7u8; 32]);
            let mut ky = vec![8u8]; ky.extend([7u8; 1568]);
            let reg = Register {
                username: format!("user{i}"), identity_key: ec.clone(), registration_id: 1,
                signed_prekey: Some(SignedPrekey { id: 1, public_key: ec, signature: vec![0; 64] }),
                last_resort_kyber: Some(SignedPrekey { id: 1, public_key: ky, signature: vec![0; 64] }),
                one_time_prekeys: vec![], one_time_kyber: vec![],
            };
            let frame = Request { id: 1, body: Some(request::Body::Register(reg)) }.encode_to_vec();
            for m in tx.seal(&frame).unwrap() { ws.send(Message::binary(m)).await.unwrap(); }
            let mut got = 0;
            while got < 2 {
                if let Message::Binary(b) = ws.next().await.unwrap().unwrap() {
                    if rx.open(&b).unwrap().is_some() { got += 1; }
                }
            }
            (ws, tx, rx)
        }));
    }
    for t in tasks { sockets.push(t.await.unwrap()); }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    println!("{} idle registered connections; server rss: {} KiB", sockets.len(), rss(pid));
}
