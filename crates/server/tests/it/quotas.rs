//! What one address and young accounts can put into other people's mailboxes: an attacker
//! with many fresh accounts from one address fills at most the young senders' share of a
//! victim's mailbox, the victim's existing contacts still get through, and one address is held
//! to its send rate while others are served.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::future::join_all;
use sotto_api::{request::Body, response, ErrorCode, SendMessage, MAX_ACKS_PER_REQUEST};
use sotto_server::store::{
    MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS, MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER,
};

use crate::support::*;

/// The attacker's host is 127.0.0.1, as for every other test client; the others are here.
const FRIEND_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const VICTIM_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A send of `content` to `to`'s device 1.
fn send_to(to: &Device, content: &[u8]) -> Body {
    Body::Send(SendMessage {
        destination: to.username.clone(),
        envelopes: vec![envelope(1, to.registration_id, content)],
        own_envelopes: vec![],
    })
}

/// Makes these accounts of a stopped server's SQLite database `by` older.
fn age_accounts(dir: &tempfile::TempDir, usernames: &[&str], by: Duration) {
    let db = rusqlite::Connection::open(dir.path().join("data").join("sotto.db")).unwrap();
    let by = i64::try_from(by.as_millis()).unwrap();
    for username in usernames {
        let changed = db
            .execute(
                "UPDATE accounts SET created_ms = created_ms - ?1 WHERE username = ?2",
                rusqlite::params![by, username],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
}

#[tokio::test]
async fn many_fresh_accounts_from_one_address_do_not_stop_a_victims_contacts() {
    // More fresh accounts than it takes to fill the young senders' share of a mailbox, each
    // trying one more envelope than its own quota.
    const ATTACKERS: usize = 30;
    let quota = MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER;
    let share = MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS;
    assert!(ATTACKERS * quota > share);

    // The victim and her friend have had their accounts for two days.
    let server = TestServer::start().await;
    let mut victim = Device::register(&server, "victim", 0).await;
    let mut friend = Device::register(&server, "friend", 0).await;
    victim.client.close().await;
    friend.client.close().await;
    let dir = server.stop().await;
    age_accounts(&dir, &["victim", "friend"], 2 * DAY);
    // A day makes an account old; the address's send limit is lifted, to show what the
    // mailbox bounds alone hold.
    let server = TestServer::start_in(dir, |c| {
        c.young_account_age = DAY;
        c.registrations_per_minute = ATTACKERS as u32;
    })
    .await;

    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        attackers.push(Device::register(&server, &format!("attacker{i}"), 0).await);
    }
    let flood = send_to(&victim, b"flood");
    let placed: Vec<usize> = join_all(attackers.iter_mut().map(|attacker| {
        let flood = flood.clone();
        async move {
            let mut ids = Vec::new();
            for _ in 0..=quota {
                ids.push(attacker.client.start_request(flood.clone()).await);
            }
            let mut placed = 0;
            for id in ids {
                match attacker.client.response(id).await {
                    response::Body::Sent(_) => placed += 1,
                    response::Body::Error(e) => {
                        assert_eq!(e.code(), ErrorCode::MailboxFull, "{e:?}")
                    }
                    other => panic!("{other:?}"),
                }
            }
            placed
        }
    }))
    .await;
    assert!(placed.iter().all(|&n| n <= quota), "{placed:?}");
    assert_eq!(placed.iter().sum::<usize>(), share, "{placed:?}");

    // The friend, from her own address, still gets through, many times over.
    friend.client = TestClient::connect_from(&server, &friend.key, FRIEND_HOST).await;
    for i in 0..10u8 {
        friend.send_ok(&victim, &[b'f', i]).await;
    }
    // A new honest contact is refused while the share is full...
    let mut newcomer = Device::register_from(&server, "newcomer", 0, FRIEND_HOST).await;
    let refused = newcomer
        .client
        .request_error(send_to(&victim, b"hello"))
        .await;
    assert_eq!(refused.code(), ErrorCode::MailboxFull);

    // ... and the victim gets everything that was placed.
    victim.client = TestClient::connect_from(&server, &victim.key, VICTIM_HOST).await;
    victim.client.prove().await;
    let envelopes = victim.client.drain().await;
    let from_friend: Vec<&[u8]> = envelopes
        .iter()
        .filter(|e| e.source == "friend")
        .map(|e| e.content.as_slice())
        .collect();
    assert_eq!(from_friend.len(), 10);
    assert_eq!(envelopes.len(), share + 10);
    // Once she has read them, there is room for new contacts again.
    for ids in envelopes.chunks(MAX_ACKS_PER_REQUEST) {
        victim.ack(ids.iter().map(|e| e.id).collect()).await;
    }
    newcomer.send_ok(&victim, b"hello").await;
}

#[tokio::test]
async fn one_address_is_held_to_its_send_rate_and_others_are_not() {
    const PER_MINUTE: u32 = 60;
    let server = TestServer::start_with(|c| c.sends_per_minute_per_address = PER_MINUTE).await;
    let mut mallory = Device::register(&server, "mallory", 0).await;
    let mut bob = Device::register_from(&server, "bob", 0, VICTIM_HOST).await;
    bob.client.close().await;
    let mut alice = Device::register_from(&server, "alice", 0, FRIEND_HOST).await;

    // Mallory sends in rounds of 20 until refused; a guard stops a limit that never comes.
    let mut sent = 0;
    let error = 'flood: {
        for _ in 0..1_000 {
            let mut ids = Vec::new();
            for _ in 0..20 {
                ids.push(mallory.client.start_request(send_to(&bob, b"flood")).await);
            }
            let mut refused = None;
            for id in ids {
                match mallory.client.response(id).await {
                    response::Body::Sent(_) => sent += 1,
                    response::Body::Error(e) => refused = refused.or(Some(e)),
                    other => panic!("{other:?}"),
                }
            }
            if let Some(error) = refused {
                break 'flood error;
            }
        }
        panic!("{sent} sends and none refused");
    };
    assert_eq!(error.code(), ErrorCode::RateLimited, "{error:?}");
    let retry_after = error.retry_after_ms.unwrap();
    assert!(retry_after > 0 && retry_after <= 60_000, "{retry_after}");
    assert!(sent >= PER_MINUTE as usize, "{sent}");
    // A send to a name nobody has is limited the same way, before the name is looked up.
    let unknown = mallory
        .client
        .request_error(Body::Send(SendMessage {
            destination: "nobody".into(),
            envelopes: vec![envelope(1, 1, b"x")],
            own_envelopes: vec![],
        }))
        .await;
    assert_eq!(unknown.code(), ErrorCode::RateLimited);

    // Alice, on another address, is not affected; Bob gets both.
    alice.send_ok(&bob, b"hi bob").await;
    bob.client = TestClient::connect_from(&server, &bob.key, VICTIM_HOST).await;
    bob.client.prove().await;
    let envelopes = bob.client.drain().await;
    let from = |name: &str| envelopes.iter().filter(|e| e.source == name).count();
    assert_eq!((from("mallory"), from("alice")), (sent, 1));
}
