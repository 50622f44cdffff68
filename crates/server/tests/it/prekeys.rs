//! Prekeys: upload, count, bundles, one-time keys handed out once, the fetch rate limit.

use std::collections::HashSet;
use std::time::Duration;

use sotto_api::{
    request::Body, response, Bundle, ErrorCode, GetBundles, PrekeyCount, PrekeyCounts,
    UploadPrekeys, BUNDLE_FETCH_BURST,
};

use crate::support::*;

/// The last-resort Kyber prekey's id in [`register_request`].
const LAST_RESORT_ID: u32 = 1000;

fn get(username: &str) -> Body {
    Body::GetBundles(GetBundles {
        username: username.into(),
        device_id: None,
    })
}

async fn bundle(device: &mut Device, username: &str) -> Bundle {
    match device.client.request(get(username)).await {
        response::Body::Bundles(mut b) => {
            assert_eq!(b.username, username);
            assert_eq!(b.bundles.len(), 1);
            b.bundles.remove(0)
        }
        other => panic!("{other:?}"),
    }
}

async fn counts(device: &mut Device) -> (u32, u32) {
    match device
        .client
        .request(Body::PrekeyCount(PrekeyCount {}))
        .await
    {
        response::Body::PrekeyCounts(PrekeyCounts {
            one_time,
            one_time_kyber,
        }) => (one_time, one_time_kyber),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn upload_count_and_fetch() {
    let server = TestServer::start().await;
    let mut alice = Device::register(&server, "alice", 2).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    assert_eq!(counts(&mut alice).await, (2, 2));

    let first = bundle(&mut bob, "alice").await;
    assert_eq!(
        (first.device_id, first.registration_id),
        (1, alice.registration_id)
    );
    assert_eq!(first.identity_key.len(), 33);
    assert_eq!(first.signed_prekey.as_ref().unwrap().id, 1);
    let one_time = first.one_time_prekey.unwrap().id;
    let kyber = first.kyber_prekey.unwrap().id;
    assert!((1..=2).contains(&one_time) && (1..=2).contains(&kyber));
    assert_eq!(counts(&mut alice).await, (1, 1));

    // Upload: a new signed prekey and more one-time keys.
    let upload = UploadPrekeys {
        signed_prekey: Some(signed_prekey(2)),
        last_resort_kyber: None,
        one_time_prekeys: one_time_prekeys(10..13),
        one_time_kyber: vec![kyber_prekey(10)],
    };
    match alice.client.request(Body::UploadPrekeys(upload)).await {
        response::Body::PrekeyCounts(c) => assert_eq!((c.one_time, c.one_time_kyber), (4, 2)),
        other => panic!("{other:?}"),
    }
    // A malformed upload changes nothing.
    let mut bad = UploadPrekeys {
        one_time_prekeys: one_time_prekeys(20..25),
        ..Default::default()
    };
    bad.one_time_prekeys[3].public_key[0] = 0x07;
    let error = alice.client.request_error(Body::UploadPrekeys(bad)).await;
    assert_eq!(error.code(), ErrorCode::BadRequest);
    assert_eq!(counts(&mut alice).await, (4, 2));

    let second = bundle(&mut bob, "alice").await;
    assert_eq!(second.signed_prekey.unwrap().id, 2);
    assert_ne!(second.one_time_prekey.unwrap().id, one_time);

    // Draining the one-time keys leaves bundles with the last-resort Kyber key only.
    for _ in 0..3 {
        bundle(&mut bob, "alice").await;
    }
    assert_eq!(counts(&mut alice).await, (0, 0));
    let empty = bundle(&mut bob, "alice").await;
    assert!(empty.one_time_prekey.is_none());
    assert_eq!(empty.kyber_prekey.unwrap().id, LAST_RESORT_ID);

    // Unknown accounts and devices.
    let error = bob.client.request_error(get("nobody")).await;
    assert_eq!(error.code(), ErrorCode::NotFound);
    let missing_device = GetBundles {
        username: "alice".into(),
        device_id: Some(2),
    };
    let error = bob
        .client
        .request_error(Body::GetBundles(missing_device))
        .await;
    assert_eq!(error.code(), ErrorCode::NotFound);
    let one_device = GetBundles {
        username: "alice".into(),
        device_id: Some(1),
    };
    assert!(matches!(
        bob.client.request(Body::GetBundles(one_device)).await,
        response::Body::Bundles(b) if b.bundles.len() == 1
    ));
}

#[tokio::test]
async fn one_time_prekeys_are_handed_out_once_under_concurrent_fetches() {
    const KEYS: u32 = 30;
    const FETCHERS: usize = 4;
    const FETCHES_EACH: usize = 10; // 40 fetches for 30 keys, within each fetcher's burst
    let server = TestServer::start().await;
    let _alice = Device::register(&server, "alice", KEYS).await;
    let mut fetchers = Vec::new();
    for i in 0..FETCHERS {
        fetchers.push(Device::register(&server, &format!("fetcher{i}"), 0).await);
    }
    // Every fetcher sends all its requests before reading any answer, and all fetchers run at
    // once: up to 40 fetches in flight on the server.
    let results = futures_util::future::join_all(fetchers.iter_mut().map(|f| async move {
        let mut ids = Vec::new();
        for _ in 0..FETCHES_EACH {
            ids.push(f.client.start_request(get("alice")).await);
        }
        let mut bundles = Vec::new();
        for id in ids {
            match f.client.response(id).await {
                response::Body::Bundles(mut b) => bundles.push(b.bundles.remove(0)),
                other => panic!("{other:?}"),
            }
        }
        bundles
    }))
    .await;
    let bundles: Vec<Bundle> = results.into_iter().flatten().collect();
    assert_eq!(bundles.len(), FETCHERS * FETCHES_EACH);
    let ec: Vec<u32> = bundles
        .iter()
        .filter_map(|b| b.one_time_prekey.as_ref())
        .map(|k| k.id)
        .collect();
    let kyber: Vec<u32> = bundles
        .iter()
        .map(|b| b.kyber_prekey.as_ref().unwrap().id)
        .filter(|&id| id != LAST_RESORT_ID)
        .collect();
    assert_eq!(
        ec.len(),
        KEYS as usize,
        "every one-time key handed out, then none"
    );
    assert_eq!(
        ec.iter().collect::<HashSet<_>>().len(),
        ec.len(),
        "no EC key twice"
    );
    assert_eq!(kyber.len(), KEYS as usize);
    assert_eq!(
        kyber.iter().collect::<HashSet<_>>().len(),
        kyber.len(),
        "no Kyber key twice"
    );
}

#[tokio::test]
async fn bundle_fetches_are_rate_limited_per_requester_unknown_names_alike() {
    // A refill slower than any test run, so the bucket holds exactly its burst.
    let server =
        TestServer::start_with(|c| c.bundle_fetch_refill = Duration::from_secs(3600)).await;
    let _alice = Device::register(&server, "alice", 0).await;
    let mut bob = Device::register(&server, "bob", 0).await;
    let mut carol = Device::register(&server, "carol", 0).await;
    // Names nobody has are answered as such within the limit, and count against it...
    for i in 0..BUNDLE_FETCH_BURST - 1 {
        let error = bob.client.request_error(get(&format!("nobody{i}"))).await;
        assert_eq!(error.code(), ErrorCode::NotFound);
    }
    bundle(&mut bob, "alice").await;
    // ... past it, existing names and unknown ones get the same answer.
    for name in ["alice", "carol", "nobody"] {
        let error = bob.client.request_error(get(name)).await;
        assert_eq!(error.code(), ErrorCode::RateLimited);
        let retry_after = error.retry_after_ms.unwrap();
        assert!(retry_after > 0 && retry_after <= 3_600_000, "{retry_after}");
    }
    // Other requesters are not affected.
    bundle(&mut carol, "alice").await;
    let error = carol.client.request_error(get("nobody")).await;
    assert_eq!(error.code(), ErrorCode::NotFound);
}

/// Every requester fetches `alice`'s bundle `fetches` times, all at once; returns the bundles
/// handed out (a fetch refused as rate limited hands out none).
async fn drain(requesters: &mut [Device], fetches: usize) -> Vec<Bundle> {
    let results = futures_util::future::join_all(requesters.iter_mut().map(|r| async move {
        let mut ids = Vec::new();
        for _ in 0..fetches {
            ids.push(r.client.start_request(get("alice")).await);
        }
        let mut bundles = Vec::new();
        for id in ids {
            match r.client.response(id).await {
                response::Body::Bundles(mut b) => bundles.push(b.bundles.remove(0)),
                response::Body::Error(e) => assert_eq!(e.code(), ErrorCode::RateLimited),
                other => panic!("{other:?}"),
            }
        }
        bundles
    }))
    .await;
    results.into_iter().flatten().collect()
}

/// How many of `bundles` carry a one-time EC prekey, and how many a one-time Kyber prekey.
fn one_time(bundles: &[Bundle]) -> (usize, usize) {
    let ec = bundles
        .iter()
        .filter(|b| b.one_time_prekey.is_some())
        .count();
    let kyber = bundles
        .iter()
        .filter(|b| b.kyber_prekey.as_ref().unwrap().id != LAST_RESORT_ID)
        .count();
    (ec, kyber)
}

#[tokio::test]
async fn many_requesters_get_a_bounded_number_of_one_time_prekeys() {
    const PER_HOUR: u32 = 10;
    const REQUESTERS: usize = 6;
    let server = TestServer::start_with(|c| {
        c.one_time_prekeys_per_hour = PER_HOUR;
        c.bundle_fetch_refill = Duration::from_secs(3600);
    })
    .await;
    let mut alice = Device::register(&server, "alice", 99).await;
    let mut requesters = Vec::new();
    for i in 0..REQUESTERS {
        requesters.push(Device::register(&server, &format!("drainer{i}"), 0).await);
    }
    // Each requester fetches its whole allowance, and one more.
    let fetches = BUNDLE_FETCH_BURST as usize + 1;
    let bundles = drain(&mut requesters, fetches).await;
    // Every fetch within the requesters' limits is answered, with a bundle that starts a
    // session (signed prekey, a Kyber prekey); the target's hourly handouts carry one-time
    // prekeys, the others the last-resort Kyber prekey only.
    assert_eq!(bundles.len(), REQUESTERS * BUNDLE_FETCH_BURST as usize);
    assert!(bundles
        .iter()
        .all(|b| b.signed_prekey.is_some() && b.kyber_prekey.is_some()));
    assert_eq!(one_time(&bundles), (PER_HOUR as usize, PER_HOUR as usize));
    assert_eq!(counts(&mut alice).await, (99 - PER_HOUR, 99 - PER_HOUR));
}

#[tokio::test]
async fn young_requesters_get_fewer_one_time_prekeys() {
    let server = TestServer::start_with(|c| {
        c.young_account_age = Duration::from_secs(24 * 60 * 60);
    })
    .await;
    let mut alice = Device::register(&server, "alice", 99).await;
    let mut requesters = Vec::new();
    for i in 0..6 {
        requesters.push(Device::register(&server, &format!("drainer{i}"), 0).await);
    }
    // Young accounts' fetch allowance is 10 at once (`YOUNG_BUNDLE_FETCH_BURST`); they try more.
    let bundles = drain(&mut requesters, 20).await;
    assert_eq!(bundles.len(), 6 * 10);
    // Young requesters get 3 one-time prekeys of one target an hour between them
    // (`YOUNG_REQUESTER_ONE_TIME_PREKEYS_PER_HOUR`).
    assert_eq!(one_time(&bundles), (3, 3));
    assert_eq!(counts(&mut alice).await, (96, 96));
}
