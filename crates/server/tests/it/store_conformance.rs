//! The storage conformance suite: every case is written once against `&dyn Store` and run on
//! both backends — SQLite in a temporary directory, PostgreSQL in a fresh database on the local
//! server (see `sotto_test_support::postgres`) — as `store_conformance::sqlite::<case>` and
//! `store_conformance::postgres::<case>`.
//!
//! A case gets a [`Backend`] and opens as many stores on the same data as it needs: a second
//! one stands for a second server instance (PostgreSQL) or a restart (SQLite reopening its
//! file).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use sotto_api::{
    Bundle, OneTimePrekey, SignedPrekey, MAX_MAILBOX_ENVELOPES, MAX_PREKEYS_PER_UPLOAD,
    MAX_STORED_PREKEYS,
};
use sotto_server::store::{
    AccountDevices, DeviceAddress, DeviceRecord, NewDevice, NewEnvelope, PostgresStore,
    PrekeyCounts, PrekeyUpload, SqliteStore, Store, StoreError,
    MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS, MAX_PENDING_ENVELOPES_PER_SENDER,
    MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER,
};
use sotto_test_support::postgres::TestDatabase;

// ---------------------------------------------------------------------------------------------
// The two backends.

/// Where a case's data lives.
#[async_trait]
trait Backend: Sync {
    /// A new store on this backend's data: another server instance, or the same one restarted.
    async fn open(&self) -> Arc<dyn Store>;
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(&self.dir.path().join("data").join("sotto.db"))
                .await
                .unwrap(),
        )
    }
}

struct Postgres {
    db: TestDatabase,
}

impl Postgres {
    async fn new() -> Postgres {
        Postgres {
            db: TestDatabase::create().await,
        }
    }

    async fn finish(self) {
        self.db.drop_database().await;
    }
}

#[async_trait]
impl Backend for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(PostgresStore::connect(self.db.url()).await.unwrap())
    }
}

/// Generates `sqlite::<case>` and `postgres::<case>` for every case.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Sqlite::new();
                    super::$case(&backend).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    // On a panic the guard's drop removes the database instead.
                    let backend = super::Postgres::new().await;
                    super::$case(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

conformance!(
    account_creation,
    account_conflicts_store_nothing,
    concurrent_account_creation,
    prekey_upload_replace_and_count,
    prekey_limits,
    one_time_prekeys_are_handed_out_once,
    bundles_without_one_time_prekeys_take_none,
    bundles_of_unknown_accounts_and_devices,
    concurrent_take_bundles,
    append_and_fetch_in_order,
    batches_across_devices,
    mailbox_full_refuses_the_whole_send,
    sender_quota_caps_one_senders_envelopes_per_mailbox,
    young_senders_have_a_lower_quota_and_a_share_of_the_mailbox,
    registration_times_are_kept,
    a_refused_send_leaves_the_rest_of_its_batch,
    ack_deletes_only_this_devices_envelopes,
    expiry,
    reopening_keeps_everything,
    concurrent_appends,
);

// ---------------------------------------------------------------------------------------------
// Fixtures. The store keeps keys as given (the server validates them first), but these have
// the real sizes.

fn identity_key(n: u8) -> Vec<u8> {
    let mut key = vec![0x05];
    key.extend([n; 32]);
    key
}

fn ec_key(id: u32, tag: u8) -> OneTimePrekey {
    let mut public_key = vec![0x05];
    public_key.extend([tag; 32]);
    public_key[1..5].copy_from_slice(&id.to_be_bytes());
    OneTimePrekey { id, public_key }
}

fn signed_ec_key(id: u32, tag: u8) -> SignedPrekey {
    let OneTimePrekey { id, public_key } = ec_key(id, tag);
    SignedPrekey {
        id,
        public_key,
        signature: vec![tag; 64],
    }
}

fn kyber_key(id: u32, tag: u8) -> SignedPrekey {
    let mut public_key = vec![0x08];
    public_key.resize(1 + 1568, tag);
    public_key[1..5].copy_from_slice(&id.to_be_bytes());
    SignedPrekey {
        id,
        public_key,
        signature: vec![tag ^ 0xff; 64],
    }
}

/// Device `n`'s keys: authentication key `[n; 32]`, no one-time prekeys.
fn device(n: u8) -> NewDevice {
    NewDevice {
        auth_key: [n; 32],
        registration_id: 1000 + u32::from(n),
        signed_prekey: signed_ec_key(1, n),
        last_resort_kyber: kyber_key(100, n),
        one_time_prekeys: Vec::new(),
        one_time_kyber: Vec::new(),
    }
}

/// Device `n` with one-time EC prekeys `ec` and one-time Kyber prekeys `kyber` (by id).
fn device_with(
    n: u8,
    ec: impl IntoIterator<Item = u32>,
    kyber: impl IntoIterator<Item = u32>,
) -> NewDevice {
    NewDevice {
        one_time_prekeys: ec.into_iter().map(|id| ec_key(id, n)).collect(),
        one_time_kyber: kyber.into_iter().map(|id| kyber_key(id, n)).collect(),
        ..device(n)
    }
}

/// An envelope for `to` from the mailbox's own account (a copy for another of its devices),
/// which [`MAX_PENDING_ENVELOPES_PER_SENDER`] does not limit: the cases about the mailbox
/// itself fill whole mailboxes with these.
fn envelope(to: DeviceAddress, content: impl Into<Vec<u8>>, timestamp: u64) -> NewEnvelope {
    NewEnvelope {
        destination: to,
        source: "sender".to_owned(),
        source_account: to.account,
        source_device: 1,
        envelope_type: sotto_api::EnvelopeType::Message as i32,
        content: content.into(),
        server_timestamp_ms: timestamp,
        young_since_ms: None,
    }
}

/// [`Store::append_batch`], returning once the batch is durable.
trait Append {
    async fn append(
        &self,
        sends: Vec<Vec<NewEnvelope>>,
    ) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError>;
}

impl Append for dyn Store {
    async fn append(
        &self,
        sends: Vec<Vec<NewEnvelope>>,
    ) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
        let appended = self.append_batch(sends).await?;
        appended.durable.wait().await?;
        Ok(appended.results)
    }
}

/// Stores one send, in a batch of its own, and returns its result.
async fn send(store: &dyn Store, envelopes: Vec<NewEnvelope>) -> Result<Vec<u64>, StoreError> {
    let mut results = store.append(vec![envelopes]).await.unwrap();
    assert_eq!(results.len(), 1);
    results.pop().unwrap()
}

async fn register(store: &dyn Store, name: &str, n: u8) -> DeviceRecord {
    store
        .create_account(name, &identity_key(n), device(n))
        .await
        .unwrap()
}

fn other_device(of: &DeviceRecord, device_id: u32) -> DeviceAddress {
    DeviceAddress {
        account: of.address.account,
        device_id,
    }
}

async fn take_one(store: &dyn Store, name: &str) -> Bundle {
    let mut bundles = store
        .take_bundles(name, Some(1), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bundles.len(), 1);
    bundles.remove(0)
}

async fn fetch_ids(store: &dyn Store, device: DeviceAddress) -> Vec<u64> {
    let envelopes = store
        .fetch_envelopes(device, 0, MAX_MAILBOX_ENVELOPES + 10)
        .await
        .unwrap();
    envelopes.iter().map(|e| e.id).collect()
}

/// Uploads one-time EC prekeys in uploads of at most [`MAX_PREKEYS_PER_UPLOAD`], as the server
/// would let a client.
async fn upload_ec(store: &dyn Store, device: DeviceAddress, ids: std::ops::Range<u32>, tag: u8) {
    let ids: Vec<u32> = ids.collect();
    for chunk in ids.chunks(MAX_PREKEYS_PER_UPLOAD) {
        let upload = PrekeyUpload {
            one_time_prekeys: chunk.iter().map(|&id| ec_key(id, tag)).collect(),
            ..PrekeyUpload::default()
        };
        store.upload_prekeys(device, upload).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and devices.

async fn account_creation(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = register(store, "alice", 1).await;
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.address.device_id, 1);
    assert_eq!(alice.registration_id, 1001);
    let bob = register(store, "bob", 2).await;
    assert_ne!(alice.address.account, bob.address.account);

    assert_eq!(
        store.device_by_auth_key(&[1; 32]).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.device_by_auth_key(&[2; 32]).await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(store.device_by_auth_key(&[3; 32]).await.unwrap(), None);

    assert_eq!(
        store.account_devices("alice").await.unwrap(),
        Some(AccountDevices {
            account: alice.address.account,
            devices: vec![(1, 1001)]
        })
    );
    assert_eq!(store.account_devices("carol").await.unwrap(), None);

    // The bundle carries what was registered.
    let bundle = take_one(store, "alice").await;
    assert_eq!(
        bundle,
        Bundle {
            device_id: 1,
            registration_id: 1001,
            identity_key: identity_key(1),
            signed_prekey: Some(signed_ec_key(1, 1)),
            one_time_prekey: None,
            kyber_prekey: Some(kyber_key(100, 1)),
        }
    );
}

async fn account_conflicts_store_nothing(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = store
        .create_account("alice", &identity_key(1), device_with(1, 1..=3, 1..=2))
        .await
        .unwrap();

    // The username is taken: nothing of the second device is stored.
    let error = store
        .create_account("alice", &identity_key(2), device_with(2, 1..=5, 1..=5))
        .await;
    assert!(matches!(error, Err(StoreError::UsernameTaken)), "{error:?}");
    assert!(!format!("{:?}", error).contains("alice"));
    assert_eq!(store.device_by_auth_key(&[2; 32]).await.unwrap(), None);

    // The key is taken: no account "bob".
    let taken_key = NewDevice {
        auth_key: [1; 32],
        ..device_with(2, 1..=5, 1..=5)
    };
    let error = store
        .create_account("bob", &identity_key(2), taken_key)
        .await;
    assert!(matches!(error, Err(StoreError::KeyTaken)), "{error:?}");
    assert_eq!(store.account_devices("bob").await.unwrap(), None);

    // Too many one-time prekeys: nothing stored either.
    let too_many = MAX_STORED_PREKEYS as u32 + 1;
    let error = store
        .create_account("carol", &identity_key(3), device_with(3, 1..=too_many, []))
        .await;
    assert!(
        matches!(
            error,
            Err(StoreError::TooManyPrekeys {
                max: MAX_STORED_PREKEYS
            })
        ),
        "{error:?}"
    );
    assert_eq!(store.account_devices("carol").await.unwrap(), None);
    assert_eq!(store.device_by_auth_key(&[3; 32]).await.unwrap(), None);

    // The refused names and keys are free, and alice is untouched.
    let bob = store
        .create_account("bob", &identity_key(2), device_with(2, 1..=5, []))
        .await
        .unwrap();
    assert_eq!(
        store.prekey_counts(bob.address).await.unwrap(),
        PrekeyCounts {
            one_time: 5,
            one_time_kyber: 0
        }
    );
    register(store, "carol", 3).await;
    assert_eq!(
        store.device_by_auth_key(&[1; 32]).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts {
            one_time: 3,
            one_time_kyber: 2
        }
    );
    assert_eq!(take_one(store, "alice").await.identity_key, identity_key(1));
}

async fn concurrent_account_creation(backend: &dyn Backend) {
    let stores = [backend.open().await, backend.open().await];
    // 24 registrations for 6 names: one wins each name.
    let tasks: Vec<_> = (0..24u8)
        .map(|i| {
            let store = Arc::clone(&stores[usize::from(i % 2)]);
            tokio::spawn(async move {
                let name = format!("user{}", i % 6);
                (
                    i,
                    store
                        .create_account(&name, &identity_key(i), device(i))
                        .await,
                )
            })
        })
        .collect();
    let mut winners = BTreeMap::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(record) => assert!(winners
                .insert(record.username.clone(), (i, record))
                .is_none()),
            Err(StoreError::UsernameTaken) => {}
            Err(other) => panic!("registration {i}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 6);
    let store = &*stores[0];
    for i in 0..24u8 {
        let found = store.device_by_auth_key(&[i; 32]).await.unwrap();
        match winners.get(&format!("user{}", i % 6)) {
            Some((winner, record)) if *winner == i => assert_eq!(found.as_ref(), Some(record)),
            _ => assert_eq!(found, None, "the losing registration {i} stored its device"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prekeys.

async fn prekey_upload_replace_and_count(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = store
        .create_account("alice", &identity_key(1), device_with(1, 1..=3, 1..=2))
        .await
        .unwrap();
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts {
            one_time: 3,
            one_time_kyber: 2
        }
    );

    // Ids 3 (EC) and 2 (Kyber) are replaced, the others added.
    let upload = PrekeyUpload {
        signed_prekey: Some(signed_ec_key(7, 70)),
        last_resort_kyber: Some(kyber_key(8, 80)),
        one_time_prekeys: vec![ec_key(3, 33), ec_key(4, 1), ec_key(5, 1)],
        one_time_kyber: vec![kyber_key(2, 22), kyber_key(3, 1)],
    };
    let counts = store.upload_prekeys(alice.address, upload).await.unwrap();
    assert_eq!(
        counts,
        PrekeyCounts {
            one_time: 5,
            one_time_kyber: 3
        }
    );
    assert_eq!(store.prekey_counts(alice.address).await.unwrap(), counts);

    // An empty upload changes nothing.
    assert_eq!(
        store
            .upload_prekeys(alice.address, PrekeyUpload::default())
            .await
            .unwrap(),
        counts
    );

    // Bundles show the new keys, one-time keys in id order, replacements as replaced.
    let mut one_time = Vec::new();
    let mut kyber = Vec::new();
    for _ in 0..6 {
        let bundle = take_one(store, "alice").await;
        assert_eq!(bundle.signed_prekey, Some(signed_ec_key(7, 70)));
        one_time.push(bundle.one_time_prekey);
        kyber.push(bundle.kyber_prekey.unwrap());
    }
    assert_eq!(
        one_time,
        vec![
            Some(ec_key(1, 1)),
            Some(ec_key(2, 1)),
            Some(ec_key(3, 33)),
            Some(ec_key(4, 1)),
            Some(ec_key(5, 1)),
            None
        ]
    );
    assert_eq!(
        kyber,
        vec![
            kyber_key(1, 1),
            kyber_key(2, 22),
            kyber_key(3, 1),
            kyber_key(8, 80),
            kyber_key(8, 80),
            kyber_key(8, 80)
        ]
    );
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts::default()
    );

    // No such device.
    let missing = other_device(&alice, 2);
    let error = store
        .upload_prekeys(
            missing,
            PrekeyUpload {
                one_time_prekeys: vec![ec_key(1, 1)],
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(error, Err(StoreError::NotFound)), "{error:?}");
    assert!(matches!(
        store.prekey_counts(missing).await,
        Err(StoreError::NotFound)
    ));
}

async fn prekey_limits(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = register(store, "alice", 1).await;
    let max = MAX_STORED_PREKEYS as u32;

    upload_ec(store, alice.address, 0..max - 1, 1).await;
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap().one_time,
        max - 1
    );

    // Two more would exceed the limit: the whole upload is refused, the signed prekey with it.
    let over = PrekeyUpload {
        signed_prekey: Some(signed_ec_key(9, 9)),
        one_time_prekeys: vec![ec_key(max, 1), ec_key(max + 1, 1)],
        ..PrekeyUpload::default()
    };
    let error = store.upload_prekeys(alice.address, over).await;
    assert!(
        matches!(
            error,
            Err(StoreError::TooManyPrekeys {
                max: MAX_STORED_PREKEYS
            })
        ),
        "{error:?}"
    );
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap().one_time,
        max - 1
    );

    // Exactly the limit is fine; replacing a stored id adds nothing; one more is refused.
    upload_ec(store, alice.address, max - 1..max, 1).await;
    upload_ec(store, alice.address, 0..1, 2).await;
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap().one_time,
        max
    );
    let error = store
        .upload_prekeys(
            alice.address,
            PrekeyUpload {
                one_time_prekeys: vec![ec_key(max, 1)],
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(error, Err(StoreError::TooManyPrekeys { .. })),
        "{error:?}"
    );

    // Kyber has its own limit; one upload over it stores nothing.
    let kyber = PrekeyUpload {
        one_time_kyber: (0..=max).map(|id| kyber_key(id, 1)).collect(),
        ..Default::default()
    };
    let error = store.upload_prekeys(alice.address, kyber).await;
    assert!(
        matches!(error, Err(StoreError::TooManyPrekeys { .. })),
        "{error:?}"
    );
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts {
            one_time: max,
            one_time_kyber: 0
        }
    );

    // Nothing of the refused uploads reached a bundle; taking a key makes room for one.
    let bundle = take_one(store, "alice").await;
    assert_eq!(bundle.signed_prekey, Some(signed_ec_key(1, 1)));
    assert_eq!(bundle.one_time_prekey, Some(ec_key(0, 2)));
    assert_eq!(bundle.kyber_prekey, Some(kyber_key(100, 1)));
    upload_ec(store, alice.address, max..max + 1, 1).await;
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap().one_time,
        max
    );
}

async fn one_time_prekeys_are_handed_out_once(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = store
        .create_account("alice", &identity_key(1), device_with(1, 1..=3, 1..=2))
        .await
        .unwrap();

    let mut handed_out = Vec::new();
    for round in 0..5 {
        // Alternately one device and all devices (alice has one).
        let device = if round % 2 == 0 { Some(1) } else { None };
        let bundles = store
            .take_bundles("alice", device, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bundles.len(), 1);
        let bundle = &bundles[0];
        assert_eq!((bundle.device_id, bundle.registration_id), (1, 1001));
        assert_eq!(bundle.identity_key, identity_key(1));
        assert_eq!(bundle.signed_prekey, Some(signed_ec_key(1, 1)));
        handed_out.push((
            bundle.one_time_prekey.as_ref().map(|k| k.id),
            bundle.kyber_prekey.as_ref().unwrap().id,
        ));
    }
    // EC one-time keys 1, 2, 3, then none; Kyber one-time keys 1, 2, then the last resort (100).
    assert_eq!(
        handed_out,
        vec![
            (Some(1), 1),
            (Some(2), 2),
            (Some(3), 100),
            (None, 100),
            (None, 100)
        ]
    );
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts::default()
    );
}

async fn bundles_without_one_time_prekeys_take_none(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = store
        .create_account("alice", &identity_key(1), device_with(1, 1..=3, 1..=2))
        .await
        .unwrap();
    for device in [Some(1), None] {
        let bundles = store
            .take_bundles("alice", device, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bundles.len(), 1);
        let bundle = &bundles[0];
        assert_eq!((bundle.device_id, bundle.registration_id), (1, 1001));
        assert_eq!(bundle.identity_key, identity_key(1));
        assert_eq!(bundle.signed_prekey, Some(signed_ec_key(1, 1)));
        assert_eq!(bundle.one_time_prekey, None);
        assert_eq!(bundle.kyber_prekey.as_ref().unwrap().id, 100);
    }
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts {
            one_time: 3,
            one_time_kyber: 2
        }
    );
    assert_eq!(
        store.take_bundles("nobody", None, false).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_bundles("alice", Some(2), false).await.unwrap(),
        None
    );
    // The keys are all still there, first one first.
    assert_eq!(
        take_one(store, "alice").await.one_time_prekey,
        Some(ec_key(1, 1))
    );
}

async fn bundles_of_unknown_accounts_and_devices(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    store
        .create_account("alice", &identity_key(1), device_with(1, 1..=3, 1..=3))
        .await
        .unwrap();
    assert_eq!(
        store.take_bundles("nobody", None, true).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_bundles("nobody", Some(1), true).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_bundles("alice", Some(2), true).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .take_bundles("alice", Some(u32::MAX), true)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.take_bundles("alice", Some(0), true).await.unwrap(),
        None
    );
    // None of that took a key.
    assert_eq!(
        take_one(store, "alice").await.one_time_prekey,
        Some(ec_key(1, 1))
    );
}

async fn concurrent_take_bundles(backend: &dyn Backend) {
    let stores = [backend.open().await, backend.open().await];
    let alice = stores[0]
        .create_account("alice", &identity_key(1), device_with(1, 1..=10, 1..=10))
        .await
        .unwrap();
    // 32 callers on two instances, for 10 one-time keys of each kind.
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move {
                let device = if i % 4 < 2 { Some(1) } else { None };
                let mut bundles = store
                    .take_bundles("alice", device, true)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(bundles.len(), 1);
                bundles.remove(0)
            })
        })
        .collect();
    let mut ec_ids = Vec::new();
    let mut kyber_ids = Vec::new();
    let mut last_resorts = 0;
    for task in tasks {
        let bundle = task.await.unwrap();
        if let Some(key) = bundle.one_time_prekey {
            assert_eq!(key, ec_key(key.id, 1));
            ec_ids.push(key.id);
        }
        let kyber = bundle.kyber_prekey.unwrap();
        if kyber.id == 100 {
            last_resorts += 1;
        } else {
            kyber_ids.push(kyber.id);
        }
    }
    ec_ids.sort_unstable();
    kyber_ids.sort_unstable();
    assert_eq!(
        ec_ids,
        (1..=10).collect::<Vec<_>>(),
        "every EC key exactly once"
    );
    assert_eq!(
        kyber_ids,
        (1..=10).collect::<Vec<_>>(),
        "every Kyber key exactly once"
    );
    assert_eq!(last_resorts, 22);
    assert_eq!(
        stores[1].prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts::default()
    );
}

// ---------------------------------------------------------------------------------------------
// Mailboxes.

async fn append_and_fetch_in_order(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = register(store, "alice", 1).await;
    let bob = register(store, "bob", 2).await;

    assert_eq!(send(store, Vec::new()).await.unwrap(), Vec::<u64>::new());
    let batch = (1..=3u8)
        .map(|i| envelope(bob.address, vec![i; 10], 1_000 + u64::from(i)))
        .collect();
    assert_eq!(send(store, batch).await.unwrap(), vec![1, 2, 3]);
    assert_eq!(
        send(store, vec![envelope(bob.address, vec![4], 2_000)])
            .await
            .unwrap(),
        vec![4]
    );
    let mut sealed = envelope(bob.address, vec![5; 64 * 1024], 3_000);
    sealed.source = "alice".to_owned();
    sealed.source_account = alice.address.account;
    sealed.source_device = 7;
    sealed.envelope_type = sotto_api::EnvelopeType::SealedSender as i32;
    assert_eq!(send(store, vec![sealed.clone()]).await.unwrap(), vec![5]);

    let all = store.fetch_envelopes(bob.address, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(all[0].content, vec![1; 10]);
    assert_eq!(all[0].server_timestamp_ms, 1_001);
    // The sender is named by its account: the username given with the envelope is not
    // stored.
    assert_eq!((all[0].source.as_str(), all[0].source_device), ("bob", 1));
    assert_eq!(all[0].r#type, sotto_api::EnvelopeType::Message as i32);
    let last = &all[4];
    assert_eq!(
        (
            last.source.as_str(),
            last.source_device,
            last.r#type,
            &last.content,
            last.server_timestamp_ms
        ),
        ("alice", 7, sealed.envelope_type, &sealed.content, 3_000)
    );

    let page = store.fetch_envelopes(bob.address, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4]);
    assert!(store
        .fetch_envelopes(bob.address, 5, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_envelopes(bob.address, 0, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_envelopes(bob.address, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    // Other mailboxes are separate.
    assert!(store
        .fetch_envelopes(alice.address, 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_envelopes(other_device(&bob, 2), 0, 100)
        .await
        .unwrap()
        .is_empty());
}

async fn batches_across_devices(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let a = register(store, "alice", 1).await.address;
    let b = register(store, "bob", 2).await.address;
    let c = register(store, "carol", 3).await.address;

    let order = [b, c, b, a, c, b];
    let batch = order
        .iter()
        .enumerate()
        .map(|(i, &to)| envelope(to, vec![i as u8], 1))
        .collect();
    assert_eq!(send(store, batch).await.unwrap(), vec![1, 1, 2, 1, 2, 3]);
    let batch = vec![envelope(c, vec![6], 1), envelope(b, vec![7], 1)];
    assert_eq!(send(store, batch).await.unwrap(), vec![3, 4]);

    let contents = |device| async move {
        let envelopes = store.fetch_envelopes(device, 0, 100).await.unwrap();
        envelopes
            .into_iter()
            .map(|e| (e.id, e.content[0]))
            .collect::<Vec<_>>()
    };
    assert_eq!(contents(a).await, vec![(1, 3)]);
    assert_eq!(contents(b).await, vec![(1, 0), (2, 2), (3, 5), (4, 7)]);
    assert_eq!(contents(c).await, vec![(1, 1), (2, 4), (3, 6)]);

    // A batch with a device that does not exist stores nothing and uses up no numbers.
    let missing = DeviceAddress {
        account: b.account,
        device_id: 2,
    };
    let error = send(
        store,
        vec![envelope(a, vec![8], 1), envelope(missing, vec![9], 1)],
    )
    .await;
    assert!(matches!(error, Err(StoreError::NotFound)), "{error:?}");
    assert_eq!(fetch_ids(store, a).await, vec![1]);
    assert_eq!(
        send(store, vec![envelope(a, vec![10], 1)]).await.unwrap(),
        vec![2]
    );
}

async fn mailbox_full_refuses_the_whole_send(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = register(store, "alice", 1).await.address;
    let bob = register(store, "bob", 2).await.address;
    let max = MAX_MAILBOX_ENVELOPES as u64;

    for start in (0..max - 1).step_by(500) {
        let batch = (start..(start + 500).min(max - 1))
            .map(|_| envelope(bob, vec![1], 1_000))
            .collect();
        send(store, batch).await.unwrap();
    }
    assert_eq!(fetch_ids(store, bob).await.len() as u64, max - 1);

    // Two more for bob do not fit: nothing of the batch is stored, alice's envelope neither.
    let batch = vec![
        envelope(alice, vec![2], 5_000),
        envelope(bob, vec![2], 5_000),
        envelope(bob, vec![2], 5_000),
    ];
    let error = send(store, batch).await;
    assert!(matches!(error, Err(StoreError::MailboxFull)), "{error:?}");
    assert!(fetch_ids(store, alice).await.is_empty());
    assert_eq!(fetch_ids(store, bob).await.len() as u64, max - 1);

    // One more fits (and gets the next number: the refused batch used none); then it is full.
    assert_eq!(
        send(store, vec![envelope(bob, vec![3], 5_000)])
            .await
            .unwrap(),
        vec![max]
    );
    let error = send(store, vec![envelope(bob, vec![4], 5_000)]).await;
    assert!(matches!(error, Err(StoreError::MailboxFull)), "{error:?}");
    // Another mailbox is not affected.
    assert_eq!(
        send(store, vec![envelope(alice, vec![4], 5_000)])
            .await
            .unwrap(),
        vec![1]
    );

    // An acknowledgement makes room for one.
    assert_eq!(store.ack_envelopes(bob, &[1]).await.unwrap(), 1);
    assert_eq!(
        send(store, vec![envelope(bob, vec![5], 5_000)])
            .await
            .unwrap(),
        vec![max + 1]
    );
    assert!(matches!(
        send(store, vec![envelope(bob, vec![6], 5_000)]).await,
        Err(StoreError::MailboxFull)
    ));

    // Expiry makes room too.
    assert_eq!(store.expire_envelopes(2_000).await.unwrap(), max - 2);
    assert_eq!(fetch_ids(store, bob).await, vec![max, max + 1]);
    let batch = (0..max - 2)
        .map(|_| envelope(bob, vec![7], 6_000))
        .collect::<Vec<_>>();
    assert_eq!(send(store, batch).await.unwrap().len() as u64, max - 2);
    assert!(matches!(
        send(store, vec![envelope(bob, vec![8], 6_000)]).await,
        Err(StoreError::MailboxFull)
    ));
}

/// An envelope for `to` from the account `from` (its first device).
fn envelope_from(from: &DeviceRecord, to: DeviceAddress, content: u8) -> NewEnvelope {
    NewEnvelope {
        source: from.username.clone(),
        source_account: from.address.account,
        ..envelope(to, vec![content], 1_000)
    }
}

/// Stores `count` single-envelope sends from `from` to `to` in batches, each accepted.
async fn fill_from(store: &dyn Store, from: &DeviceRecord, to: DeviceAddress, count: usize) {
    let sends: Vec<Vec<NewEnvelope>> = (0..count)
        .map(|_| vec![envelope_from(from, to, 1)])
        .collect();
    for chunk in sends.chunks(500) {
        for result in store.append(chunk.to_vec()).await.unwrap() {
            result.unwrap();
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(since.unwrap().as_millis()).unwrap()
}

async fn registration_times_are_kept(backend: &dyn Backend) {
    let stores = [backend.open().await, backend.open().await];
    let before = now_ms();
    let alice = register(&*stores[0], "alice", 1).await;
    let after = now_ms();
    assert!(
        (before..=after).contains(&alice.account_created_ms),
        "{before} {alice:?} {after}"
    );
    let found = stores[1]
        .device_by_auth_key(&device(1).auth_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, alice);
}

/// An envelope for `to` from the young account `from`, young being created after `since`.
fn envelope_from_young(
    from: &DeviceRecord,
    to: DeviceAddress,
    since: u64,
    content: u8,
) -> NewEnvelope {
    NewEnvelope {
        young_since_ms: Some(since),
        ..envelope_from(from, to, content)
    }
}

async fn young_senders_have_a_lower_quota_and_a_share_of_the_mailbox(backend: &dyn Backend) {
    let stores = [backend.open().await, backend.open().await];
    let store = &*stores[0];
    let victim = register(store, "victim", 1).await;
    let bob = register(store, "bob", 2).await;
    // Accounts created after Bob's are young; the next ones are created a millisecond later
    // at least.
    let since = bob.account_created_ms;
    while now_ms() <= since {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let quota = MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER;
    let share = MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS;
    assert!(quota < MAX_PENDING_ENVELOPES_PER_SENDER && share % quota == 0);
    let to = victim.address;
    let young_quota_error = |result: &Result<Vec<u64>, StoreError>| matches!(result, Err(StoreError::SenderQuotaExceeded { max }) if *max == quota);
    let share_error = |result: &Result<Vec<u64>, StoreError>| matches!(result, Err(StoreError::YoungSendersShareFull { max }) if *max == share);

    // Young senders fill the young share, each up to its own quota.
    let mut attackers = Vec::new();
    for i in 0..share / quota {
        let attacker = register(store, &format!("attacker{i}"), 10 + i as u8).await;
        let sends: Vec<Vec<NewEnvelope>> = (0..quota)
            .map(|_| vec![envelope_from_young(&attacker, to, since, 1)])
            .collect();
        for result in stores[i % 2].append(sends).await.unwrap() {
            result.unwrap();
        }
        attackers.push(attacker);
    }
    let over = send(
        store,
        vec![envelope_from_young(&attackers[0], to, since, 2)],
    )
    .await;
    assert!(young_quota_error(&over), "{over:?}");
    // A young sender with nothing in the mailbox yet finds the share full, on either instance.
    let late = register(store, "late", 100).await;
    let refused = send(store, vec![envelope_from_young(&late, to, since, 3)]).await;
    assert!(share_error(&refused), "{refused:?}");
    let refused = stores[1]
        .append(vec![vec![envelope_from_young(&late, to, since, 3)]])
        .await
        .unwrap();
    assert!(share_error(&refused[0]), "{refused:?}");
    // ... but not elsewhere.
    send(
        store,
        vec![envelope_from_young(&late, bob.address, since, 4)],
    )
    .await
    .unwrap();
    // Bob, who is not young, still gets through, to his own (full) quota.
    fill_from(store, &bob, to, MAX_PENDING_ENVELOPES_PER_SENDER).await;
    assert!(is_quota_error(
        &send(store, vec![envelope_from(&bob, to, 5)]).await
    ));
    assert_eq!(
        fetch_ids(store, to).await.len(),
        share + MAX_PENDING_ENVELOPES_PER_SENDER
    );
    // Delivery makes room in the share again.
    let first = fetch_ids(store, to).await[0];
    assert_eq!(store.ack_envelopes(to, &[first]).await.unwrap(), 1);
    send(store, vec![envelope_from_young(&late, to, since, 6)])
        .await
        .unwrap();
}

fn is_quota_error(result: &Result<Vec<u64>, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::SenderQuotaExceeded { max }) if *max == MAX_PENDING_ENVELOPES_PER_SENDER
    )
}

async fn sender_quota_caps_one_senders_envelopes_per_mailbox(backend: &dyn Backend) {
    let stores = [backend.open().await, backend.open().await];
    let store = &*stores[0];
    let mallory = register(store, "mallory", 1).await;
    let bob = register(store, "bob", 2).await;
    let victim = register(store, "victim", 3).await.address;
    let other = register(store, "other", 4).await.address;
    let quota = MAX_PENDING_ENVELOPES_PER_SENDER;
    assert!(quota < MAX_MAILBOX_ENVELOPES);

    // Mallory fills her share of the victim's mailbox...
    fill_from(store, &mallory, victim, quota - 1).await;
    // ... the last ones arriving at once, through two instances: exactly one more fits.
    let racing: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let envelope = envelope_from(&mallory, victim, 2);
            tokio::spawn(async move { send(&*store, vec![envelope]).await })
        })
        .collect();
    let mut accepted = 0;
    for task in racing {
        let result = task.await.unwrap();
        match &result {
            Ok(_) => accepted += 1,
            refused => assert!(is_quota_error(refused), "{refused:?}"),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(fetch_ids(store, victim).await.len(), quota);

    // A send of hers with one envelope over the quota stores nothing, the envelope for a
    // mailbox with room neither.
    let refused = send(
        store,
        vec![
            envelope_from(&mallory, other, 3),
            envelope_from(&mallory, victim, 3),
        ],
    )
    .await;
    assert!(is_quota_error(&refused), "{refused:?}");
    assert!(fetch_ids(store, other).await.is_empty());
    assert_eq!(fetch_ids(store, victim).await.len(), quota);
    let refused_again = stores[1]
        .append(vec![vec![envelope_from(&mallory, victim, 4)]])
        .await
        .unwrap();
    assert!(is_quota_error(&refused_again[0]), "{refused_again:?}");

    // Bob still gets through to the victim; Mallory to other mailboxes.
    let highest = *fetch_ids(store, victim).await.last().unwrap();
    let bobs = send(store, vec![envelope_from(&bob, victim, 5)])
        .await
        .unwrap();
    assert_eq!(
        bobs,
        vec![highest + 1],
        "refused sends use no sequence number"
    );
    assert_eq!(
        send(store, vec![envelope_from(&mallory, other, 6)])
            .await
            .unwrap(),
        vec![1]
    );

    // Once the victim acknowledges two of Mallory's, she may send two more, and no third.
    assert_eq!(store.ack_envelopes(victim, &[1, 2]).await.unwrap(), 2);
    let results = stores[1]
        .append(vec![
            vec![envelope_from(&mallory, victim, 7)],
            vec![envelope_from(&mallory, victim, 8)],
            vec![envelope_from(&mallory, victim, 9)],
        ])
        .await
        .unwrap();
    // (Through the other instance: numbered above every number before, maybe with a jump.)
    let first = results[0].as_ref().unwrap()[0];
    assert!(first > bobs[0]);
    assert_eq!(results[1].as_ref().unwrap(), &vec![first + 1]);
    assert!(is_quota_error(&results[2]), "{:?}", results[2]);

    // Expiry makes room as well.
    assert_eq!(
        store.expire_envelopes(u64::MAX).await.unwrap() as usize,
        quota + 2
    );
    fill_from(store, &mallory, victim, quota).await;
    assert!(is_quota_error(
        &send(store, vec![envelope_from(&mallory, victim, 10)]).await
    ));
}

async fn a_refused_send_leaves_the_rest_of_its_batch(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let bob = register(store, "bob", 2).await.address;
    let carol = register(store, "carol", 3).await.address;
    let max = MAX_MAILBOX_ENVELOPES as u64;

    // Carol's mailbox is filled by one batch of many sends.
    let fill: Vec<Vec<NewEnvelope>> = (0..max)
        .step_by(500)
        .map(|start| {
            (start..(start + 500).min(max))
                .map(|_| envelope(carol, vec![1], 1_000))
                .collect()
        })
        .collect();
    let filled = store.append(fill).await.unwrap();
    let filled: Vec<u64> = filled.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(filled, (1..=max).collect::<Vec<_>>());

    // The middle send hits the full mailbox (after an envelope for bob): it stores nothing
    // and uses no sequence number; the first and the third are stored.
    let results = store
        .append(vec![
            vec![envelope(bob, vec![1], 2_000), envelope(bob, vec![2], 2_000)],
            vec![
                envelope(bob, vec![9], 2_000),
                envelope(carol, vec![9], 2_000),
            ],
            vec![envelope(bob, vec![3], 2_000)],
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap(), &vec![1, 2]);
    assert!(
        matches!(results[1], Err(StoreError::MailboxFull)),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().unwrap(), &vec![3]);
    let stored = store.fetch_envelopes(bob, 0, 100).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| (e.id, e.content.clone()))
            .collect::<Vec<_>>(),
        vec![(1, vec![1]), (2, vec![2]), (3, vec![3])]
    );
    assert_eq!(fetch_ids(store, carol).await.len() as u64, max);

    // A send to a device that does not exist is refused the same way.
    let missing = DeviceAddress {
        account: bob.account,
        device_id: 2,
    };
    let results = store
        .append(vec![
            vec![envelope(missing, vec![8], 3_000)],
            vec![envelope(bob, vec![4], 3_000)],
        ])
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(StoreError::NotFound)),
        "{:?}",
        results[0]
    );
    assert_eq!(results[1].as_ref().unwrap(), &vec![4]);

    // Empty batches and empty sends store nothing.
    assert!(store.append(Vec::new()).await.unwrap().is_empty());
    let results = store
        .append(vec![Vec::new(), vec![envelope(bob, vec![5], 3_000)]])
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &Vec::<u64>::new());
    assert_eq!(results[1].as_ref().unwrap(), &vec![5]);
    assert_eq!(fetch_ids(store, bob).await, vec![1, 2, 3, 4, 5]);
}

async fn ack_deletes_only_this_devices_envelopes(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = register(store, "alice", 1).await.address;
    let bob = register(store, "bob", 2).await.address;
    for to in [alice, bob] {
        let batch = (0..3).map(|_| envelope(to, vec![1], 1)).collect();
        assert_eq!(send(store, batch).await.unwrap(), vec![1, 2, 3]);
    }

    // Ids are per device: bob's acknowledgement of 1 and 3 leaves alice's 1 and 3 alone.
    assert_eq!(
        store
            .ack_envelopes(bob, &[1, 3, 3, 99, u64::MAX])
            .await
            .unwrap(),
        2
    );
    assert_eq!(fetch_ids(store, bob).await, vec![2]);
    assert_eq!(fetch_ids(store, alice).await, vec![1, 2, 3]);
    assert_eq!(store.ack_envelopes(bob, &[1, 3]).await.unwrap(), 0);
    assert_eq!(store.ack_envelopes(alice, &[]).await.unwrap(), 0);
    assert_eq!(
        store
            .ack_envelopes(
                DeviceAddress {
                    account: bob.account,
                    device_id: 2
                },
                &[2]
            )
            .await
            .unwrap(),
        0
    );
    assert_eq!(fetch_ids(store, bob).await, vec![2]);

    // Numbers are never reused.
    assert_eq!(store.ack_envelopes(bob, &[2]).await.unwrap(), 1);
    assert_eq!(
        send(store, vec![envelope(bob, vec![1], 1)]).await.unwrap(),
        vec![4]
    );
}

async fn expiry(backend: &dyn Backend) {
    let store = backend.open().await;
    let store = &*store;
    let alice = register(store, "alice", 1).await.address;
    let bob = register(store, "bob", 2).await.address;
    let batch = vec![
        envelope(alice, vec![1], 100),
        envelope(bob, vec![2], 300),
        envelope(alice, vec![3], 200),
        envelope(bob, vec![4], 100),
        envelope(alice, vec![5], 300),
    ];
    send(store, batch).await.unwrap();

    assert_eq!(
        store.expire_envelopes(100).await.unwrap(),
        0,
        "strictly before"
    );
    assert_eq!(store.expire_envelopes(101).await.unwrap(), 2);
    assert_eq!(fetch_ids(store, alice).await, vec![2, 3]);
    assert_eq!(fetch_ids(store, bob).await, vec![1]);
    assert_eq!(store.expire_envelopes(300).await.unwrap(), 1);
    assert_eq!(fetch_ids(store, alice).await, vec![3]);
    assert_eq!(store.expire_envelopes(u64::MAX).await.unwrap(), 2);
    assert!(fetch_ids(store, alice).await.is_empty());
    assert!(fetch_ids(store, bob).await.is_empty());
    assert_eq!(store.expire_envelopes(u64::MAX).await.unwrap(), 0);
    // Expired numbers are not reused either.
    assert_eq!(
        send(store, vec![envelope(bob, vec![6], 400)])
            .await
            .unwrap(),
        vec![3]
    );
}

async fn reopening_keeps_everything(backend: &dyn Backend) {
    let (alice, bob) = {
        let store = backend.open().await;
        let store = &*store;
        let alice = store
            .create_account("alice", &identity_key(1), device_with(1, 1..=3, 1..=1))
            .await
            .unwrap();
        let bob = register(store, "bob", 2).await;
        let upload = PrekeyUpload {
            signed_prekey: Some(signed_ec_key(5, 55)),
            ..Default::default()
        };
        store.upload_prekeys(alice.address, upload).await.unwrap();
        assert_eq!(
            take_one(store, "alice").await.one_time_prekey,
            Some(ec_key(1, 1))
        );
        let batch = (1..=3u8)
            .map(|i| envelope(bob.address, vec![i], 1_000))
            .collect();
        send(store, batch).await.unwrap();
        store.ack_envelopes(bob.address, &[2]).await.unwrap();
        (alice, bob)
    };

    let store = backend.open().await;
    let store = &*store;
    assert_eq!(
        store.device_by_auth_key(&[1; 32]).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.device_by_auth_key(&[2; 32]).await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.prekey_counts(alice.address).await.unwrap(),
        PrekeyCounts {
            one_time: 2,
            one_time_kyber: 0
        }
    );
    let envelopes = store.fetch_envelopes(bob.address, 0, 10).await.unwrap();
    assert_eq!(
        envelopes
            .iter()
            .map(|e| (e.id, e.content[0]))
            .collect::<Vec<_>>(),
        vec![(1, 1), (3, 3)]
    );
    // The taken key stays taken, the new signed prekey stays, numbering goes on above every
    // number given before (SQLite's jumps after a restart, see `append_batch`).
    let bundle = take_one(store, "alice").await;
    assert_eq!(bundle.one_time_prekey, Some(ec_key(2, 1)));
    assert_eq!(bundle.signed_prekey, Some(signed_ec_key(5, 55)));
    assert_eq!(bundle.kyber_prekey, Some(kyber_key(100, 1)));
    let next = send(store, vec![envelope(bob.address, vec![4], 1)])
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0] > 3, "{next:?}");
    assert!(matches!(
        store
            .create_account("alice", &identity_key(3), device(3))
            .await,
        Err(StoreError::UsernameTaken)
    ));
}

async fn concurrent_appends(backend: &dyn Backend) {
    const TASKS: usize = 16;
    const ROUNDS: usize = 10;
    let stores = [backend.open().await, backend.open().await];
    let bob = register(&*stores[0], "bob", 2).await.address;
    let alice = register(&*stores[0], "alice", 1).await.address;

    // While the appends run, every fetch sees what the one before saw and more after it:
    // envelopes become visible in sequence order. (Numbers from the two instances may be
    // apart: SQLite's second instance counts as a restart, see `append_batch`.)
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (store, done) = (Arc::clone(&stores[1]), Arc::clone(&done));
        tokio::spawn(async move {
            let mut fetches = 0;
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let ids = fetch_ids(&*store, bob).await;
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
                assert!(
                    ids.starts_with(&seen),
                    "an envelope became visible before an earlier one"
                );
                seen = ids;
                fetches += 1;
                tokio::task::yield_now().await;
            }
            fetches
        })
    };

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&stores[task % 2]);
            tokio::spawn(async move {
                let mut given = Vec::new();
                for round in 0..ROUNDS {
                    // Batches of 1 to 3 for bob, some with an envelope for alice among them.
                    let size = 1 + (task + round) % 3;
                    let mut batch: Vec<_> = (0..size)
                        .map(|k| envelope(bob, vec![task as u8, round as u8, k as u8], 1))
                        .collect();
                    if round % 2 == 0 {
                        batch.insert(size / 2, envelope(alice, vec![task as u8, round as u8], 1));
                    }
                    let contents: Vec<_> = batch
                        .iter()
                        .map(|e| (e.destination, e.content.clone()))
                        .collect();
                    let seqs = send(&*store, batch).await.unwrap();
                    assert_eq!(seqs.len(), contents.len());
                    given.extend(
                        contents
                            .into_iter()
                            .zip(seqs)
                            .filter(|((to, _), _)| *to == bob)
                            .map(|((_, c), s)| (s, c)),
                    );
                }
                given
            })
        })
        .collect();
    let mut given = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        // One task's appends are sequential, so its numbers increase.
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "a task's numbers went backwards"
        );
        given.extend(mine);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);

    given.sort();
    let total = given.len();
    let seqs: BTreeSet<u64> = given.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len(), total, "a number was given twice");
    let stored = stores[0]
        .fetch_envelopes(bob, 0, MAX_MAILBOX_ENVELOPES)
        .await
        .unwrap();
    assert_eq!(
        stored
            .into_iter()
            .map(|e| (e.id, e.content))
            .collect::<Vec<_>>(),
        given
    );
    // Alice got hers, each number once.
    let alice_ids = fetch_ids(&*stores[0], alice).await;
    assert_eq!(alice_ids.len(), TASKS * ROUNDS / 2);
    assert!(alice_ids.windows(2).all(|w| w[0] < w[1]));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: migrations of instances starting together.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_instances_starting_together_migrate_once() {
    let db = TestDatabase::create().await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { PostgresStore::connect(&url).await.map(drop) })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let rows = client
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, vec![1, 2, 3]);

    // A database from a newer server is refused, and left as it is.
    client
        .execute("INSERT INTO schema_version VALUES (99, 0)", &[])
        .await
        .unwrap();
    let error = PostgresStore::connect(db.url()).await.unwrap_err();
    assert!(
        error.to_string().contains("newer than this server knows"),
        "{error}"
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4, "the versions above and the newer one");
    drop(client);
    connection.await.unwrap().unwrap();
    db.drop_database().await;
}
