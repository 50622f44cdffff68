//! Each attack probe at a small size against a real `sotto-server` process with its production
//! limits: the probe runs to its end, its numbers agree with each other, honest users are served,
//! and the defences hold — fresh accounts place a bounded number of envelopes, drainers get a
//! bounded number of one-time prekeys, a replayed handshake takes nothing over, and nothing of
//! the envelopes is left in the database files or the trace log once the server has stopped.
//! (The slow-headers deadline is shown by the server's own `attacks` tests.)

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
        messages: 140,
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
        // A fresh account leaves at most 100 envelopes waiting in anyone's mailbox.
        assert!(placed <= 100, "{report}");
        // An account that placed less than it tried was refused something.
        assert!(placed == 140 || !report.refused.is_empty(), "{report}");
    }
    // The victim's contact gets through.
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
    // Fresh requesters together get at most 3 of a target's one-time prekeys an hour.
    assert!(
        report.one_time_ec <= 3 && report.one_time_kyber <= 3,
        "{report}"
    );
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
    // The replay takes nothing over: the honest connection stays up and gets the mail live,
    // and the replaying socket gets nothing after the handshake.
    assert_eq!(report.honest_closed, None, "{report}");
    assert_eq!(report.delivery, Delivery::LiveConnection, "{report}");
    assert_eq!(report.replay_pushes, 0, "{report}");
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
    // Deleted envelopes are overwritten in the database file at once (secure_delete); the
    // sender's name is only in its account row and the username index. (The write-ahead log
    // keeps the latest pages until the server has been quiet for a second and truncates it,
    // or until its next start: the server's `no_traces` test waits for that.)
    for scan in report
        .database_running
        .iter()
        .chain(&report.database_stopped)
        .filter(|scan| scan.name == "sotto.db")
    {
        assert_eq!(scan.ciphertext_runs, 0, "{report}");
        assert!(scan.username <= 2, "{report}");
    }
    // The trace log holds no ciphertext, wire bytes, names or frame lengths.
    let log = &report.log;
    assert_eq!(
        (
            log.ciphertext_runs,
            log.wire_runs,
            log.length_lines,
            log.username
        ),
        (0, 0, 0, 0),
        "{report}"
    );
}
