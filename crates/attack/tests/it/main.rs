//! Each attack probe at a small size against the current `sotto-server`: the probe runs to its
//! end, its numbers agree with each other, and what must hold whatever the server's defences
//! (honest users served, mail delivered) holds. The figures themselves are the probes' output,
//! not asserted here.

use sotto_attack::{
    disk_scan, mailbox_flood, prekey_drain, replay_handshake, slow_headers, Delivery,
    DiskScanOptions, MailboxFloodOptions, PrekeyDrainOptions, ReplayHandshakeOptions,
    SlowHeadersOptions,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_sockets_are_accounted_for_and_honest_users_served_meanwhile() {
    let options = SlowHeadersOptions {
        sockets: 3,
        byte_every_ms: 200,
        max_secs: 4,
        // Room for everyone: the honest side must be served.
        server_max_connections: 1_000,
        ..SlowHeadersOptions::default()
    };
    let report = slow_headers(options).await.unwrap();
    println!("{report}");
    assert_eq!(report.closed_after.len() + report.still_open, 3);
    assert!(report.health.attempts >= 1);
    assert!(!report.health.served.is_empty(), "{report}");
    assert!(report.honest.attempts >= 1);
    assert!(!report.honest.served.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_flood_counts_agree_and_the_contact_gets_through_a_small_flood() {
    let options = MailboxFloodOptions {
        accounts: 2,
        messages: 40,
        ..MailboxFloodOptions::default()
    };
    let report = mailbox_flood(options).await.unwrap();
    println!("{report}");
    assert_eq!(
        report.registered + report.registrations_refused.values().sum::<usize>(),
        2
    );
    assert_eq!(report.placed.len(), report.registered);
    for &placed in &report.placed {
        assert!(placed <= 40);
        // An account that placed less than its share was refused something.
        assert!(placed == 40 || !report.refused.is_empty(), "{report}");
    }
    // Eighty envelopes fill no mailbox: the victim's contact gets through.
    assert_eq!(report.contact_after, Ok(()), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekey_drain_counts_agree() {
    let options = PrekeyDrainOptions {
        accounts: 2,
        secs: 3,
        prekeys: 10,
        ..PrekeyDrainOptions::default()
    };
    let report = prekey_drain(options).await.unwrap();
    println!("{report}");
    let refused_registrations: usize = report
        .refused
        .iter()
        .filter(|(why, _)| why.starts_with("Register"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(report.registered + refused_registrations, 2, "{report}");
    assert!(report.registered >= 1, "{report}");
    // A fresh account may start one conversation.
    assert!(report.bundles >= 1, "{report}");
    assert!(report.one_time_ec <= 10 && report.one_time_kyber <= 10);
    assert!(report.one_time_ec <= report.bundles);
    assert!(report.one_time_kyber + report.last_resort <= report.bundles);
    assert_eq!(
        report.last_one_time_at.is_some(),
        report.one_time_ec + report.one_time_kyber > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_replayed_handshake_the_device_still_gets_its_mail() {
    let report = replay_handshake(ReplayHandshakeOptions::default())
        .await
        .unwrap();
    println!("{report}");
    assert_ne!(report.delivery, Delivery::Never, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_scan_exchange_is_served_and_the_files_are_scanned() {
    let report = disk_scan(DiskScanOptions { messages: 5 }).await.unwrap();
    println!("{report}");
    assert_eq!((report.sent, report.acknowledged), (5, 5));
    assert!(report
        .database_running
        .iter()
        .any(|scan| scan.name == "sotto.db" && scan.bytes > 0));
    assert!(report.log.bytes > 0);
    for scan in report
        .database_running
        .iter()
        .chain(&report.database_stopped)
    {
        assert!(scan.envelopes_found <= 5);
    }
}
