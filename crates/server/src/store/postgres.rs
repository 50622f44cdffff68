//! The production backend: PostgreSQL, shared by any number of server instances.
//!
//! Every operation is one transaction (READ COMMITTED) on a pooled connection, committed with
//! `synchronous_commit` on: the store sets it on each of its connections (a startup option),
//! so durability does not depend on the server's or the database's configuration. Instances coordinate only through row locks, always
//! taken in one order — device rows first, sorted by account and device id, then envelope or
//! prekey rows — so that no two transactions deadlock:
//! - sequence numbers are read from the device rows locked (`FOR NO KEY UPDATE`) at the start
//!   of the transaction and advanced with `UPDATE devices SET next_seq = next_seq + n`; the
//!   device rows stay locked until commit, so each device's envelopes commit, and become
//!   visible, in sequence order;
//! - one-time prekeys are taken with `FOR UPDATE SKIP LOCKED`: concurrent takers, on any
//!   instance, each get a different key or none, never the same one, and never wait;
//! - migrations run under a transaction-scoped advisory lock, so that instances starting at
//!   once apply each of them once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use futures_util::future::{try_join, try_join3, try_join_all};
use sotto_api::{Bundle, OneTimePrekey, SignedPrekey, MAX_MAILBOX_ENVELOPES, MAX_STORED_PREKEYS};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

use super::{
    AccountDevices, AccountId, Appended, DeviceAddress, DeviceRecord, Durable, NewDevice,
    NewEnvelope, PrekeyCounts, PrekeyUpload, Store, StoreError, StoredEnvelope,
    MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS, MAX_PENDING_ENVELOPES_PER_SENDER,
    MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER,
};

/// Connections per server instance. Each request holds one for one short transaction; 16 keep
/// a few cores' worth of transactions in flight (PostgreSQL's durable commits scale with
/// concurrent clients) and leave room under PostgreSQL's default `max_connections` of 100 for
/// several instances.
const POOL_SIZE: usize = 16;

/// The startup option every connection of the store is opened with.
const SYNCHRONOUS_COMMIT: &str = "-c synchronous_commit=on";

/// How long opening a connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a free connection before failing, rather than queueing
/// forever when the database is stuck.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock (`pg_advisory_xact_lock`) held while migrating: "sotto_mg" in ASCII.
const MIGRATION_LOCK: i64 = 0x736f_7474_6f5f_6d67;

/// The device id of an account's first device.
const FIRST_DEVICE: u32 = 1;

/// [`MAX_MAILBOX_ENVELOPES`] as PostgreSQL's `bigint`.
const MAILBOX_LIMIT: i64 = MAX_MAILBOX_ENVELOPES as i64;

/// [`MAX_PENDING_ENVELOPES_PER_SENDER`] as PostgreSQL's `bigint`.
const SENDER_QUOTA: i64 = MAX_PENDING_ENVELOPES_PER_SENDER as i64;

/// [`MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER`] as PostgreSQL's `bigint`.
const YOUNG_SENDER_QUOTA: i64 = MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER as i64;

/// [`MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS`] as PostgreSQL's `bigint`.
const YOUNG_SHARE: i64 = MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS as i64;

/// The names the schema gives the unique constraints whose violation callers are told about.
const USERNAME_UNIQUE: &str = "accounts_username_unique";
const AUTH_KEY_UNIQUE: &str = "devices_auth_key_unique";

/// The schema, one entry per version: `MIGRATIONS[i]` takes a database from version `i` to
/// `i + 1` (recorded in `schema_version`). Only ever append.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

const SCHEMA_V1: &str = "
CREATE TABLE accounts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username     TEXT   NOT NULL,
    identity_key BYTEA  NOT NULL,
    created_ms   BIGINT NOT NULL,
    CONSTRAINT accounts_username_unique UNIQUE (username)
);

CREATE TABLE devices (
    account                     BIGINT NOT NULL REFERENCES accounts (id),
    device_id                   BIGINT NOT NULL,
    auth_key                    BYTEA  NOT NULL,
    registration_id             BIGINT NOT NULL,
    signed_prekey_id            BIGINT NOT NULL,
    signed_prekey               BYTEA  NOT NULL,
    signed_prekey_signature     BYTEA  NOT NULL,
    last_resort_kyber_id        BIGINT NOT NULL,
    last_resort_kyber           BYTEA  NOT NULL,
    last_resort_kyber_signature BYTEA  NOT NULL,
    -- The sequence number the device's next envelope gets.
    next_seq                    BIGINT NOT NULL DEFAULT 1,
    -- Envelopes in the device's mailbox, kept with every insert and delete.
    mailbox_count               BIGINT NOT NULL DEFAULT 0 CHECK (mailbox_count >= 0),
    created_ms                  BIGINT NOT NULL,
    PRIMARY KEY (account, device_id),
    CONSTRAINT devices_auth_key_unique UNIQUE (auth_key)
);

CREATE TABLE one_time_prekeys (
    account    BIGINT NOT NULL,
    device_id  BIGINT NOT NULL,
    key_id     BIGINT NOT NULL,
    public_key BYTEA  NOT NULL,
    PRIMARY KEY (account, device_id, key_id),
    FOREIGN KEY (account, device_id) REFERENCES devices (account, device_id)
);

CREATE TABLE one_time_kyber_prekeys (
    account    BIGINT NOT NULL,
    device_id  BIGINT NOT NULL,
    key_id     BIGINT NOT NULL,
    public_key BYTEA  NOT NULL,
    signature  BYTEA  NOT NULL,
    PRIMARY KEY (account, device_id, key_id),
    FOREIGN KEY (account, device_id) REFERENCES devices (account, device_id)
);

CREATE TABLE envelopes (
    account             BIGINT  NOT NULL,
    device_id           BIGINT  NOT NULL,
    seq                 BIGINT  NOT NULL,
    source              TEXT    NOT NULL,
    source_device       BIGINT  NOT NULL,
    envelope_type       INTEGER NOT NULL,
    content             BYTEA   NOT NULL,
    server_timestamp_ms BIGINT  NOT NULL,
    PRIMARY KEY (account, device_id, seq),
    FOREIGN KEY (account, device_id) REFERENCES devices (account, device_id)
);

CREATE INDEX envelopes_by_time ON envelopes (server_timestamp_ms);
";

/// The sending account of every envelope, for the per-sender quota
/// ([`MAX_PENDING_ENVELOPES_PER_SENDER`]), and the index that counts one sender's envelopes in
/// one mailbox without reading the mailbox. Envelopes stored before get their sender's account
/// from its username (accounts are never deleted; 0, which is no account, should one be
/// missing).
const SCHEMA_V2: &str = "
ALTER TABLE envelopes ADD COLUMN source_account BIGINT NOT NULL DEFAULT 0;

UPDATE envelopes e SET source_account = a.id FROM accounts a WHERE a.username = e.source;

ALTER TABLE envelopes ALTER COLUMN source_account DROP DEFAULT;

CREATE INDEX envelopes_by_sender ON envelopes (account, device_id, source_account);
";

/// Envelopes no longer keep their sender's username: delivery needs the sending account
/// (kept for the per-sender quota), and the username is read from it when an envelope is
/// fetched. (PostgreSQL drops the column from the catalogue at once; the bytes of rows
/// written before stay in the table's files until the rows are rewritten or vacuumed.)
const SCHEMA_V3: &str = "
ALTER TABLE envelopes DROP COLUMN source;
";

/// Locks device rows in the one order every transaction uses; given parallel arrays of
/// account and device ids, returns the rows that exist.
const LOCK_DEVICES: &str = "
SELECT account, device_id FROM devices
WHERE (account, device_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
ORDER BY account, device_id
FOR NO KEY UPDATE";

/// [`LOCK_DEVICES`] for a batch of sends: also returns each device's next sequence number
/// and mailbox size.
const LOCK_MAILBOXES: &str = "
SELECT account, device_id, next_seq, mailbox_count FROM devices
WHERE (account, device_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
ORDER BY account, device_id
FOR NO KEY UPDATE";

/// Envelopes waiting per (mailbox, sending account), for the given parallel arrays of
/// account, device and sender ids; pairs with none are left out. Run after [`LOCK_MAILBOXES`]
/// has locked the mailboxes' device rows: every insert and delete of their envelopes waits for
/// those locks, so the counts stay true until commit.
const PENDING_BY_SENDER: &str = "
SELECT account, device_id, source_account, count(*) FROM envelopes
JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(account, device_id, source_account)
USING (account, device_id, source_account)
GROUP BY account, device_id, source_account";

/// Given parallel arrays of account and device ids and a creation time, counts each
/// mailbox's envelopes from other accounts created after that time (young senders).
const PENDING_FROM_YOUNG: &str = "
SELECT e.account, e.device_id, count(*) FROM envelopes e
JOIN unnest($1::bigint[], $2::bigint[]) AS m(account, device_id)
  ON e.account = m.account AND e.device_id = m.device_id
JOIN accounts a ON a.id = e.source_account
WHERE e.source_account <> e.account AND a.created_ms > $3
GROUP BY e.account, e.device_id";

const PREKEY_COUNTS: &str = "
SELECT (SELECT count(*) FROM one_time_prekeys WHERE account = $1 AND device_id = $2),
       (SELECT count(*) FROM one_time_kyber_prekeys WHERE account = $1 AND device_id = $2)
FROM devices WHERE account = $1 AND device_id = $2";

/// The PostgreSQL backend, which several server instances can share.
///
/// A pool of connections; each operation is one transaction, committed durably
/// (`synchronous_commit` on). Row locks, taken in one order, give each device's envelopes
/// consecutive sequence numbers that become visible in order, and hand out each one-time
/// prekey at most once, however many instances serve the same account.
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/database`) and brings its
    /// schema up to date. Refuses a database written by a newer version.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        // The URL may carry a password: it is never repeated in an error.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| StoreError::Backend("the PostgreSQL URL is not valid".to_owned()))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        // A send is answered only once committed durably: never let a `synchronous_commit =
        // off` in postgresql.conf, the database or the role weaken that. Options in the URL
        // are kept; this one comes last, so it wins.
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {SYNCHRONOUS_COMMIT}"),
            _ => SYNCHRONOUS_COMMIT.to_owned(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        let store = PostgresStore { pool };
        store.migrate().await.map_err(|e| in_op("migrate", e))?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => pg(e),
            other => StoreError::Backend(format!("postgres pool: {other}")),
        })
    }

    /// Brings the schema to the newest version in one transaction, under the migration lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (\
             version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )
        .await
        .map_err(pg)?;
        let row = tx
            .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
            .await
            .map_err(pg)?;
        let version: i32 = col(&row, 0)?;
        let known = MIGRATIONS.len();
        let version = super::applied_migrations(i64::from(version), known)?;
        for (done, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.batch_execute(migration).await.map_err(|e| {
                StoreError::Backend(format!(
                    "migrating to schema version {}: {}",
                    done + 1,
                    describe(&e)
                ))
            })?;
            let applied = i32::try_from(done + 1).map_err(|_| out_of_range())?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
                &[&applied, &now_ms()],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn create_account_tx(
        &self,
        username: &str,
        identity_key: &[u8],
        device: NewDevice,
    ) -> Result<DeviceRecord, StoreError> {
        let one_time = latest_by_id(device.one_time_prekeys, |key| key.id);
        let kyber = latest_by_id(device.one_time_kyber, |key| key.id);
        check_upload_size(&one_time, &kyber)?;
        let now = now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let insert_account = tx
            .prepare_cached(
                "INSERT INTO accounts (username, identity_key, created_ms) VALUES ($1, $2, $3) \
                 RETURNING id",
            )
            .await
            .map_err(pg)?;
        let row = tx
            .query_one(&insert_account, &[&username, &identity_key, &now])
            .await
            .map_err(conflict)?;
        let account: i64 = col(&row, 0)?;
        let insert_device = tx
            .prepare_cached(
                "INSERT INTO devices (account, device_id, auth_key, registration_id, \
                 signed_prekey_id, signed_prekey, signed_prekey_signature, last_resort_kyber_id, \
                 last_resort_kyber, last_resort_kyber_signature, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await
            .map_err(pg)?;
        let signed = &device.signed_prekey;
        let last_resort = &device.last_resort_kyber;
        tx.execute(
            &insert_device,
            &[
                &account,
                &i64::from(FIRST_DEVICE),
                &&device.auth_key[..],
                &i64::from(device.registration_id),
                &i64::from(signed.id),
                &signed.public_key,
                &signed.signature,
                &i64::from(last_resort.id),
                &last_resort.public_key,
                &last_resort.signature,
                &now,
            ],
        )
        .await
        .map_err(conflict)?;
        add_one_time_prekeys(&tx, account, i64::from(FIRST_DEVICE), &one_time, &kyber).await?;
        tx.commit().await.map_err(pg)?;
        Ok(DeviceRecord {
            address: DeviceAddress {
                account: AccountId(account),
                device_id: FIRST_DEVICE,
            },
            username: username.to_owned(),
            registration_id: device.registration_id,
            account_created_ms: to_u64(now)?,
        })
    }

    async fn device_by_auth_key_tx(
        &self,
        auth_key: &[u8; 32],
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT d.account, d.device_id, a.username, d.registration_id, a.created_ms \
                 FROM devices d JOIN accounts a ON a.id = d.account WHERE d.auth_key = $1",
            )
            .await
            .map_err(pg)?;
        let Some(row) = client
            .query_opt(&statement, &[&&auth_key[..]])
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        Ok(Some(DeviceRecord {
            address: DeviceAddress {
                account: AccountId(col(&row, 0)?),
                device_id: col_u32(&row, 1)?,
            },
            username: col(&row, 2)?,
            registration_id: col_u32(&row, 3)?,
            account_created_ms: to_u64(col(&row, 4)?)?,
        }))
    }

    async fn account_devices_tx(
        &self,
        username: &str,
    ) -> Result<Option<AccountDevices>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT a.id, d.device_id, d.registration_id \
                 FROM accounts a LEFT JOIN devices d ON d.account = a.id \
                 WHERE a.username = $1 ORDER BY d.device_id",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&statement, &[&username]).await.map_err(pg)?;
        let mut found = None;
        for row in &rows {
            let entry = match &mut found {
                Some(entry) => entry,
                None => found.insert(AccountDevices {
                    account: AccountId(col(row, 0)?),
                    devices: Vec::new(),
                }),
            };
            let device_id: Option<i64> = col(row, 1)?;
            let registration_id: Option<i64> = col(row, 2)?;
            if let (Some(device_id), Some(registration_id)) = (device_id, registration_id) {
                entry
                    .devices
                    .push((to_u32(device_id)?, to_u32(registration_id)?));
            }
        }
        Ok(found)
    }

    async fn upload_prekeys_tx(
        &self,
        device: DeviceAddress,
        upload: PrekeyUpload,
    ) -> Result<PrekeyCounts, StoreError> {
        let one_time = latest_by_id(upload.one_time_prekeys, |key| key.id);
        let kyber = latest_by_id(upload.one_time_kyber, |key| key.id);
        check_upload_size(&one_time, &kyber)?;
        let (account, device_id) = (device.account.0, i64::from(device.device_id));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let lock = tx.prepare_cached(LOCK_DEVICES).await.map_err(pg)?;
        let locked = tx
            .query(&lock, &[&vec![account], &vec![device_id]])
            .await
            .map_err(pg)?;
        if locked.is_empty() {
            return Err(StoreError::NotFound);
        }
        // The signed EC prekey and the Kyber last-resort prekey are replaced the same way.
        let replacements = [
            (
                &upload.signed_prekey,
                "UPDATE devices SET signed_prekey_id = $3, signed_prekey = $4, \
                 signed_prekey_signature = $5 WHERE account = $1 AND device_id = $2",
            ),
            (
                &upload.last_resort_kyber,
                "UPDATE devices SET last_resort_kyber_id = $3, last_resort_kyber = $4, \
                 last_resort_kyber_signature = $5 WHERE account = $1 AND device_id = $2",
            ),
        ];
        for (key, sql) in replacements {
            if let Some(key) = key {
                let statement = tx.prepare_cached(sql).await.map_err(pg)?;
                let id = i64::from(key.id);
                tx.execute(
                    &statement,
                    &[&account, &device_id, &id, &key.public_key, &key.signature],
                )
                .await
                .map_err(pg)?;
            }
        }
        let counts = add_one_time_prekeys(&tx, account, device_id, &one_time, &kyber).await?;
        tx.commit().await.map_err(pg)?;
        Ok(counts)
    }

    async fn prekey_counts_tx(&self, device: DeviceAddress) -> Result<PrekeyCounts, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(PREKEY_COUNTS).await.map_err(pg)?;
        let row = client
            .query_opt(
                &statement,
                &[&device.account.0, &i64::from(device.device_id)],
            )
            .await
            .map_err(pg)?
            .ok_or(StoreError::NotFound)?;
        counts_from(&row)
    }

    async fn take_bundles_tx(
        &self,
        username: &str,
        device_id: Option<u32>,
        one_time: bool,
    ) -> Result<Option<Vec<Bundle>>, StoreError> {
        let mut client = self.client().await?;
        // The devices first, outside the transaction: a miss costs one round trip, and device
        // rows are never deleted.
        let find = client
            .prepare_cached(
                "SELECT a.id, a.identity_key, d.device_id, d.registration_id, d.signed_prekey_id, \
                 d.signed_prekey, d.signed_prekey_signature, d.last_resort_kyber_id, \
                 d.last_resort_kyber, d.last_resort_kyber_signature \
                 FROM accounts a JOIN devices d ON d.account = a.id \
                 WHERE a.username = $1 AND ($2::bigint IS NULL OR d.device_id = $2) \
                 ORDER BY d.device_id",
            )
            .await
            .map_err(pg)?;
        let devices = client
            .query(&find, &[&username, &device_id.map(i64::from)])
            .await
            .map_err(pg)?;
        let Some(first) = devices.first() else {
            return Ok(None);
        };
        let account: i64 = col(first, 0)?;
        let identity_key: Vec<u8> = col(first, 1)?;
        if !one_time {
            // Nothing is taken: no transaction.
            return devices
                .iter()
                .map(|device| {
                    bundle(
                        device,
                        identity_key.clone(),
                        None,
                        last_resort_kyber(device)?,
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some);
        }
        let tx = client.transaction().await.map_err(pg)?;
        // The subquery locks the lowest-numbered key nobody else is taking; the DELETE removes
        // exactly that one.
        let take_one_time = tx
            .prepare_cached(
                "DELETE FROM one_time_prekeys WHERE account = $1 AND device_id = $2 AND key_id = \
                 (SELECT key_id FROM one_time_prekeys WHERE account = $1 AND device_id = $2 \
                  ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING key_id, public_key",
            )
            .await
            .map_err(pg)?;
        let take_kyber = tx
            .prepare_cached(
                "DELETE FROM one_time_kyber_prekeys WHERE account = $1 AND device_id = $2 AND key_id = \
                 (SELECT key_id FROM one_time_kyber_prekeys WHERE account = $1 AND device_id = $2 \
                  ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING key_id, public_key, signature",
            )
            .await
            .map_err(pg)?;
        // Both keys of every device in one round trip (the queries are pipelined).
        let (tx_ref, take_one_time, take_kyber) = (&tx, &take_one_time, &take_kyber);
        let taken = try_join_all(devices.iter().map(|device| async move {
            let device_id: i64 = device.try_get(2)?;
            let params: [&(dyn ToSql + Sync); 2] = [&account, &device_id];
            try_join(
                tx_ref.query_opt(take_one_time, &params),
                tx_ref.query_opt(take_kyber, &params),
            )
            .await
        }))
        .await
        .map_err(pg)?;
        let mut bundles = Vec::with_capacity(devices.len());
        for (device, (one_time, kyber)) in devices.iter().zip(taken) {
            let one_time_prekey = one_time
                .map(|row| {
                    Ok::<_, StoreError>(OneTimePrekey {
                        id: col_u32(&row, 0)?,
                        public_key: col(&row, 1)?,
                    })
                })
                .transpose()?;
            let kyber_prekey = match kyber {
                Some(row) => SignedPrekey {
                    id: col_u32(&row, 0)?,
                    public_key: col(&row, 1)?,
                    signature: col(&row, 2)?,
                },
                None => last_resort_kyber(device)?,
            };
            bundles.push(bundle(
                device,
                identity_key.clone(),
                one_time_prekey,
                kyber_prekey,
            )?);
        }
        tx.commit().await.map_err(pg)?;
        Ok(Some(bundles))
    }

    async fn append_batch_tx(
        &self,
        sends: Vec<Vec<NewEnvelope>>,
    ) -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
        // Every device of the batch, in lock order.
        let devices: BTreeSet<(i64, i64)> = sends
            .iter()
            .flatten()
            .map(|envelope| device_key(envelope.destination))
            .collect();
        let accounts: Vec<i64> = devices.iter().map(|&(account, _)| account).collect();
        let device_ids: Vec<i64> = devices.iter().map(|&(_, device_id)| device_id).collect();
        // Every (mailbox, sender) pair the per-sender quota applies to.
        let pairs: BTreeSet<SenderKey> = sends.iter().flatten().filter_map(sender_key).collect();
        let pair_accounts: Vec<i64> = pairs.iter().map(|key| key.0).collect();
        let pair_devices: Vec<i64> = pairs.iter().map(|key| key.1).collect();
        let pair_senders: Vec<i64> = pairs.iter().map(|key| key.2).collect();
        // Every mailbox a young sender sends to, and the earliest creation time that counts as
        // young in the batch (the sends' times differ by the batch's few milliseconds).
        let young_mailboxes: BTreeSet<(i64, i64)> = sends
            .iter()
            .flatten()
            .filter(|envelope| envelope.young_since_ms.is_some())
            .filter_map(sender_key)
            .map(|(account, device_id, _)| (account, device_id))
            .collect();
        let young_since = sends
            .iter()
            .flatten()
            .filter_map(|envelope| envelope.young_since_ms)
            .min()
            .map_or(i64::MAX, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let young_accounts: Vec<i64> = young_mailboxes.iter().map(|key| key.0).collect();
        let young_devices: Vec<i64> = young_mailboxes.iter().map(|key| key.1).collect();

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Every device row of the batch is locked, in lock order, before anything is written;
        // the rows stay locked until commit, so what is read here stays true meanwhile.
        let lock = tx.prepare_cached(LOCK_MAILBOXES).await.map_err(pg)?;
        let count = match pairs.is_empty() {
            true => None,
            false => Some(tx.prepare_cached(PENDING_BY_SENDER).await.map_err(pg)?),
        };
        let count_young = match young_mailboxes.is_empty() {
            true => None,
            false => Some(tx.prepare_cached(PENDING_FROM_YOUNG).await.map_err(pg)?),
        };
        // Pipelined, one round trip: the counts run once the locks are held.
        let (locked, pending_rows, young_rows) = try_join3(
            tx.query(&lock, &[&accounts, &device_ids]),
            async {
                match &count {
                    Some(count) => {
                        tx.query(count, &[&pair_accounts, &pair_devices, &pair_senders])
                            .await
                    }
                    None => Ok(Vec::new()),
                }
            },
            async {
                match &count_young {
                    Some(count) => {
                        tx.query(count, &[&young_accounts, &young_devices, &young_since])
                            .await
                    }
                    None => Ok(Vec::new()),
                }
            },
        )
        .await
        .map_err(pg)?;
        let mut pending: BTreeMap<SenderKey, i64> = BTreeMap::new();
        for row in &pending_rows {
            pending.insert((col(row, 0)?, col(row, 1)?, col(row, 2)?), col(row, 3)?);
        }
        let mut young: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for row in &young_rows {
            young.insert((col(row, 0)?, col(row, 1)?), col(row, 2)?);
        }
        let mut mailboxes: BTreeMap<(i64, i64), Mailbox> = BTreeMap::new();
        for row in locked {
            mailboxes.insert(
                (col(&row, 0)?, col(&row, 1)?),
                Mailbox {
                    next_seq: col(&row, 2)?,
                    count: col(&row, 3)?,
                    added: 0,
                },
            );
        }

        // Each send, in batch order, is taken whole or refused whole; the accepted ones are
        // written with one update and one insert.
        let mut accepted = EnvelopeColumns::default();
        let mut results = Vec::with_capacity(sends.len());
        for envelopes in &sends {
            results.push(
                match plan_send(&mut mailboxes, &mut pending, &mut young, envelopes) {
                    Ok(seqs) => {
                        for (envelope, &seq) in envelopes.iter().zip(&seqs) {
                            accepted.push(envelope, seq)?;
                        }
                        seqs.into_iter().map(to_u64).collect()
                    }
                    Err(refused) => Err(refused),
                },
            );
        }

        if !accepted.seq.is_empty() {
            let grown: Vec<(&(i64, i64), &Mailbox)> =
                mailboxes.iter().filter(|(_, m)| m.added > 0).collect();
            let grown_accounts: Vec<i64> = grown.iter().map(|(key, _)| key.0).collect();
            let grown_devices: Vec<i64> = grown.iter().map(|(key, _)| key.1).collect();
            let added: Vec<i64> = grown.iter().map(|(_, m)| m.added).collect();
            let take_seqs = tx
                .prepare_cached(
                    "UPDATE devices AS d \
                     SET next_seq = d.next_seq + n.count, \
                     mailbox_count = d.mailbox_count + n.count \
                     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) \
                     AS n(account, device_id, count) \
                     WHERE d.account = n.account AND d.device_id = n.device_id",
                )
                .await
                .map_err(pg)?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO envelopes (account, device_id, seq, source_account, \
                     source_device, envelope_type, content, server_timestamp_ms) \
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], \
                     $4::bigint[], $5::bigint[], $6::integer[], $7::bytea[], $8::bigint[])",
                )
                .await
                .map_err(pg)?;
            // Pipelined, one round trip.
            let (updated, _) = try_join(
                tx.execute(&take_seqs, &[&grown_accounts, &grown_devices, &added]),
                tx.execute(
                    &insert,
                    &[
                        &accepted.account,
                        &accepted.device,
                        &accepted.seq,
                        &accepted.source_account,
                        &accepted.source_device,
                        &accepted.envelope_type,
                        &accepted.content,
                        &accepted.timestamp,
                    ],
                ),
            )
            .await
            .map_err(pg)?;
            if updated != grown.len() as u64 {
                // Locked rows cannot vanish; if they did, nothing of the batch may stay.
                return Err(StoreError::Backend(
                    "a locked device row was not updated".to_owned(),
                ));
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(results)
    }

    async fn fetch_envelopes_tx(
        &self,
        device: DeviceAddress,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT e.seq, coalesce(a.username, ''), e.source_device, e.envelope_type, \
                 e.content, e.server_timestamp_ms \
                 FROM envelopes e LEFT JOIN accounts a ON a.id = e.source_account \
                 WHERE e.account = $1 AND e.device_id = $2 AND e.seq > $3 \
                 ORDER BY e.seq LIMIT $4",
            )
            .await
            .map_err(pg)?;
        let rows = client
            .query(
                &statement,
                &[
                    &device.account.0,
                    &i64::from(device.device_id),
                    &after,
                    &limit,
                ],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|row| {
                Ok(StoredEnvelope {
                    id: to_u64(col(row, 0)?)?,
                    source: col(row, 1)?,
                    source_device: col_u32(row, 2)?,
                    r#type: col(row, 3)?,
                    content: col(row, 4)?,
                    server_timestamp_ms: to_u64(col(row, 5)?)?,
                })
            })
            .collect()
    }

    async fn ack_envelopes_tx(
        &self,
        device: DeviceAddress,
        seqs: Vec<i64>,
    ) -> Result<u64, StoreError> {
        let (account, device_id) = device_key(device);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let lock = tx.prepare_cached(LOCK_DEVICES).await.map_err(pg)?;
        let delete = tx
            .prepare_cached(
                "WITH gone AS ( \
                   DELETE FROM envelopes \
                   WHERE account = $1 AND device_id = $2 AND seq = ANY($3::bigint[]) \
                   RETURNING 1) \
                 UPDATE devices SET mailbox_count = mailbox_count - (SELECT count(*) FROM gone) \
                 WHERE account = $1 AND device_id = $2 AND EXISTS (SELECT 1 FROM gone) \
                 RETURNING (SELECT count(*) FROM gone)",
            )
            .await
            .map_err(pg)?;
        // Pipelined, one round trip: the device row is locked (lock order: devices first)
        // before the envelopes are deleted and the count updated.
        let (_, deleted) = try_join(
            tx.query(&lock, &[&vec![account], &vec![device_id]]),
            tx.query_opt(&delete, &[&account, &device_id, &seqs]),
        )
        .await
        .map_err(pg)?;
        let deleted = match deleted {
            Some(row) => to_u64(col(&row, 0)?)?,
            None => 0,
        };
        tx.commit().await.map_err(pg)?;
        Ok(deleted)
    }

    async fn expire_envelopes_tx(&self, before: i64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let expiring = tx
            .prepare_cached(
                "SELECT DISTINCT account, device_id FROM envelopes WHERE server_timestamp_ms < $1",
            )
            .await
            .map_err(pg)?;
        let devices = tx.query(&expiring, &[&before]).await.map_err(pg)?;
        if devices.is_empty() {
            return Ok(0);
        }
        let accounts = devices
            .iter()
            .map(|row| col::<i64>(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let device_ids = devices
            .iter()
            .map(|row| col::<i64>(row, 1))
            .collect::<Result<Vec<_>, _>>()?;
        let lock = tx.prepare_cached(LOCK_DEVICES).await.map_err(pg)?;
        tx.query(&lock, &[&accounts, &device_ids])
            .await
            .map_err(pg)?;
        // Only the locked devices' envelopes: one appended meanwhile, for another device, with a
        // timestamp already past is left for the next run.
        let expire = tx
            .prepare_cached(
                "WITH gone AS ( \
                   DELETE FROM envelopes e \
                   USING unnest($2::bigint[], $3::bigint[]) AS t(account, device_id) \
                   WHERE e.account = t.account AND e.device_id = t.device_id \
                     AND e.server_timestamp_ms < $1 \
                   RETURNING e.account, e.device_id), \
                 per_device AS ( \
                   SELECT account, device_id, count(*) AS n FROM gone GROUP BY account, device_id) \
                 UPDATE devices d SET mailbox_count = d.mailbox_count - p.n FROM per_device p \
                 WHERE d.account = p.account AND d.device_id = p.device_id \
                 RETURNING p.n",
            )
            .await
            .map_err(pg)?;
        let rows = tx
            .query(&expire, &[&before, &accounts, &device_ids])
            .await
            .map_err(pg)?;
        let mut deleted: i64 = 0;
        for row in &rows {
            deleted += col::<i64>(row, 0)?;
        }
        tx.commit().await.map_err(pg)?;
        to_u64(deleted)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_account(
        &self,
        username: &str,
        identity_key: &[u8],
        device: NewDevice,
    ) -> Result<DeviceRecord, StoreError> {
        self.create_account_tx(username, identity_key, device)
            .await
            .map_err(|e| in_op("create_account", e))
    }

    async fn device_by_auth_key(
        &self,
        auth_key: &[u8; 32],
    ) -> Result<Option<DeviceRecord>, StoreError> {
        self.device_by_auth_key_tx(auth_key)
            .await
            .map_err(|e| in_op("device_by_auth_key", e))
    }

    async fn account_devices(&self, username: &str) -> Result<Option<AccountDevices>, StoreError> {
        self.account_devices_tx(username)
            .await
            .map_err(|e| in_op("account_devices", e))
    }

    async fn upload_prekeys(
        &self,
        device: DeviceAddress,
        upload: PrekeyUpload,
    ) -> Result<PrekeyCounts, StoreError> {
        self.upload_prekeys_tx(device, upload)
            .await
            .map_err(|e| in_op("upload_prekeys", e))
    }

    async fn prekey_counts(&self, device: DeviceAddress) -> Result<PrekeyCounts, StoreError> {
        self.prekey_counts_tx(device)
            .await
            .map_err(|e| in_op("prekey_counts", e))
    }

    async fn take_bundles(
        &self,
        username: &str,
        device_id: Option<u32>,
        one_time: bool,
    ) -> Result<Option<Vec<Bundle>>, StoreError> {
        self.take_bundles_tx(username, device_id, one_time)
            .await
            .map_err(|e| in_op("take_bundles", e))
    }

    async fn append_batch(&self, sends: Vec<Vec<NewEnvelope>>) -> Result<Appended, StoreError> {
        let results = if sends.iter().all(Vec::is_empty) {
            sends.iter().map(|_| Ok(Vec::new())).collect()
        } else {
            self.append_batch_tx(sends)
                .await
                .map_err(|e| in_op("append_batch", e))?
                .into_iter()
                .map(|result| result.map_err(|e| in_op("append_batch", e)))
                .collect()
        };
        // Committed with `synchronous_commit` on: durable as soon as visible.
        Ok(Appended {
            results,
            durable: Durable::already(),
        })
    }

    async fn fetch_envelopes(
        &self,
        device: DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let Some((after, limit)) = super::fetch_range(after, limit) else {
            return Ok(Vec::new());
        };
        self.fetch_envelopes_tx(device, after, limit)
            .await
            .map_err(|e| in_op("fetch_envelopes", e))
    }

    async fn ack_envelopes(&self, device: DeviceAddress, ids: &[u64]) -> Result<u64, StoreError> {
        // Ids beyond `i64::MAX` were never given out.
        let seqs: Vec<i64> = ids
            .iter()
            .filter_map(|&id| i64::try_from(id).ok())
            .collect();
        if seqs.is_empty() {
            return Ok(0);
        }
        self.ack_envelopes_tx(device, seqs)
            .await
            .map_err(|e| in_op("ack_envelopes", e))
    }

    async fn expire_envelopes(&self, before_ms: u64) -> Result<u64, StoreError> {
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        self.expire_envelopes_tx(before)
            .await
            .map_err(|e| in_op("expire_envelopes", e))
    }
}

/// The last-resort Kyber prekey of a device row of `take_bundles_tx`.
fn last_resort_kyber(device: &Row) -> Result<SignedPrekey, StoreError> {
    Ok(SignedPrekey {
        id: col_u32(device, 7)?,
        public_key: col(device, 8)?,
        signature: col(device, 9)?,
    })
}

/// The bundle of a device row of `take_bundles_tx`, with the prekeys taken for it.
fn bundle(
    device: &Row,
    identity_key: Vec<u8>,
    one_time_prekey: Option<OneTimePrekey>,
    kyber_prekey: SignedPrekey,
) -> Result<Bundle, StoreError> {
    Ok(Bundle {
        device_id: col_u32(device, 2)?,
        registration_id: col_u32(device, 3)?,
        identity_key,
        signed_prekey: Some(SignedPrekey {
            id: col_u32(device, 4)?,
            public_key: col(device, 5)?,
            signature: col(device, 6)?,
        }),
        one_time_prekey,
        kyber_prekey: Some(kyber_prekey),
    })
}

/// Adds (or replaces, by id) one-time prekeys of a locked or new device and returns the
/// counts; refuses when either kind would exceed [`MAX_STORED_PREKEYS`], and the caller's
/// transaction is then rolled back. The keys have distinct ids ([`latest_by_id`]).
async fn add_one_time_prekeys(
    tx: &Transaction<'_>,
    account: i64,
    device_id: i64,
    one_time: &[OneTimePrekey],
    kyber: &[SignedPrekey],
) -> Result<PrekeyCounts, StoreError> {
    if !one_time.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO one_time_prekeys (account, device_id, key_id, public_key) \
                 SELECT $1::bigint, $2::bigint, k.id, k.public_key \
                 FROM unnest($3::bigint[], $4::bytea[]) AS k(id, public_key) \
                 ON CONFLICT (account, device_id, key_id) DO UPDATE SET public_key = EXCLUDED.public_key",
            )
            .await
            .map_err(pg)?;
        let ids: Vec<i64> = one_time.iter().map(|key| i64::from(key.id)).collect();
        let keys: Vec<&[u8]> = one_time
            .iter()
            .map(|key| key.public_key.as_slice())
            .collect();
        tx.execute(&insert, &[&account, &device_id, &ids, &keys])
            .await
            .map_err(pg)?;
    }
    if !kyber.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO one_time_kyber_prekeys (account, device_id, key_id, public_key, signature) \
                 SELECT $1::bigint, $2::bigint, k.id, k.public_key, k.signature \
                 FROM unnest($3::bigint[], $4::bytea[], $5::bytea[]) AS k(id, public_key, signature) \
                 ON CONFLICT (account, device_id, key_id) \
                 DO UPDATE SET public_key = EXCLUDED.public_key, signature = EXCLUDED.signature",
            )
            .await
            .map_err(pg)?;
        let ids: Vec<i64> = kyber.iter().map(|key| i64::from(key.id)).collect();
        let keys: Vec<&[u8]> = kyber.iter().map(|key| key.public_key.as_slice()).collect();
        let signatures: Vec<&[u8]> = kyber.iter().map(|key| key.signature.as_slice()).collect();
        tx.execute(&insert, &[&account, &device_id, &ids, &keys, &signatures])
            .await
            .map_err(pg)?;
    }
    let statement = tx.prepare_cached(PREKEY_COUNTS).await.map_err(pg)?;
    let row = tx
        .query_opt(&statement, &[&account, &device_id])
        .await
        .map_err(pg)?
        .ok_or(StoreError::NotFound)?;
    let counts = counts_from(&row)?;
    let max = u32::try_from(MAX_STORED_PREKEYS).unwrap_or(u32::MAX);
    if counts.one_time > max || counts.one_time_kyber > max {
        return Err(StoreError::TooManyPrekeys {
            max: MAX_STORED_PREKEYS,
        });
    }
    Ok(counts)
}

/// Keys with distinct ids, the last of each id winning (as if uploaded one after another).
fn latest_by_id<T>(keys: Vec<T>, id: impl Fn(&T) -> u32) -> Vec<T> {
    let mut by_id = BTreeMap::new();
    for key in keys {
        by_id.insert(id(&key), key);
    }
    by_id.into_values().collect()
}

/// Refuses an upload that alone has more one-time keys than may be stored, before sending it.
fn check_upload_size(one_time: &[OneTimePrekey], kyber: &[SignedPrekey]) -> Result<(), StoreError> {
    if one_time.len() > MAX_STORED_PREKEYS || kyber.len() > MAX_STORED_PREKEYS {
        return Err(StoreError::TooManyPrekeys {
            max: MAX_STORED_PREKEYS,
        });
    }
    Ok(())
}

fn counts_from(row: &Row) -> Result<PrekeyCounts, StoreError> {
    Ok(PrekeyCounts {
        one_time: col_u32(row, 0)?,
        one_time_kyber: col_u32(row, 1)?,
    })
}

/// A locked device's mailbox while a batch of sends is planned.
struct Mailbox {
    /// The sequence number its next envelope gets.
    next_seq: i64,
    /// Envelopes in it, counting those accepted so far.
    count: i64,
    /// Envelopes the batch adds to it.
    added: i64,
}

/// A mailbox and a sending account: `(account, device id, sender's account)`.
type SenderKey = (i64, i64, i64);

/// The (mailbox, sender) pair of an envelope that [`MAX_PENDING_ENVELOPES_PER_SENDER`] counts,
/// or `None` for one from the mailbox's own account.
fn sender_key(envelope: &NewEnvelope) -> Option<SenderKey> {
    let (account, device_id) = device_key(envelope.destination);
    let sender = envelope.source_account.0;
    (sender != account).then_some((account, device_id, sender))
}

/// Gives one send's envelopes their sequence numbers, or refuses the send whole (leaving
/// `mailboxes`, `pending` and `young` as they were): a device that does not exist, a mailbox
/// it would overfill, a mailbox it would give more than [`MAX_PENDING_ENVELOPES_PER_SENDER`]
/// of its sender's ([`MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER`] for a young sender), or more
/// than [`MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS`] of young senders'. `pending` counts each
/// (mailbox, sender) pair's envelopes, `young` each mailbox's from young senders, absent ones
/// none.
fn plan_send(
    mailboxes: &mut BTreeMap<(i64, i64), Mailbox>,
    pending: &mut BTreeMap<SenderKey, i64>,
    young: &mut BTreeMap<(i64, i64), i64>,
    envelopes: &[NewEnvelope],
) -> Result<Vec<i64>, StoreError> {
    let mut per_device: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut per_sender: BTreeMap<SenderKey, i64> = BTreeMap::new();
    let mut per_young: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for envelope in envelopes {
        i64::try_from(envelope.server_timestamp_ms)
            .map_err(|_| StoreError::Backend("envelope timestamp out of range".to_owned()))?;
        *per_device
            .entry(device_key(envelope.destination))
            .or_default() += 1;
        if let Some(key) = sender_key(envelope) {
            *per_sender.entry(key).or_default() += 1;
            if envelope.young_since_ms.is_some() {
                *per_young.entry((key.0, key.1)).or_default() += 1;
            }
        }
    }
    for (key, &n) in &per_device {
        let mailbox = mailboxes.get(key).ok_or(StoreError::NotFound)?;
        if mailbox.count.saturating_add(n) > MAILBOX_LIMIT {
            return Err(StoreError::MailboxFull);
        }
        mailbox.next_seq.checked_add(n).ok_or_else(out_of_range)?;
    }
    // One send has one sender.
    let (quota, max) = match envelopes.iter().any(|e| e.young_since_ms.is_some()) {
        true => (YOUNG_SENDER_QUOTA, MAX_PENDING_ENVELOPES_PER_YOUNG_SENDER),
        false => (SENDER_QUOTA, MAX_PENDING_ENVELOPES_PER_SENDER),
    };
    for (key, &n) in &per_sender {
        let waiting = pending.get(key).copied().unwrap_or(0);
        if waiting.saturating_add(n) > quota {
            return Err(StoreError::SenderQuotaExceeded { max });
        }
    }
    for (key, &n) in &per_young {
        let waiting = young.get(key).copied().unwrap_or(0);
        if waiting.saturating_add(n) > YOUNG_SHARE {
            return Err(StoreError::YoungSendersShareFull {
                max: MAX_MAILBOX_ENVELOPES_FROM_YOUNG_SENDERS,
            });
        }
    }
    for (key, n) in per_sender {
        *pending.entry(key).or_default() += n;
    }
    for (key, n) in per_young {
        *young.entry(key).or_default() += n;
    }
    let mut seqs = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let mailbox = mailboxes
            .get_mut(&device_key(envelope.destination))
            .ok_or(StoreError::NotFound)?;
        // Checked above: none of these overflows.
        seqs.push(mailbox.next_seq);
        mailbox.next_seq += 1;
        mailbox.count += 1;
        mailbox.added += 1;
    }
    Ok(seqs)
}

/// The accepted envelopes of a batch, as the parallel arrays of one `INSERT … unnest`.
#[derive(Default)]
struct EnvelopeColumns<'a> {
    account: Vec<i64>,
    device: Vec<i64>,
    seq: Vec<i64>,
    source_account: Vec<i64>,
    source_device: Vec<i64>,
    envelope_type: Vec<i32>,
    content: Vec<&'a [u8]>,
    timestamp: Vec<i64>,
}

impl<'a> EnvelopeColumns<'a> {
    fn push(&mut self, envelope: &'a NewEnvelope, seq: i64) -> Result<(), StoreError> {
        let (account, device) = device_key(envelope.destination);
        self.account.push(account);
        self.device.push(device);
        self.seq.push(seq);
        self.source_account.push(envelope.source_account.0);
        self.source_device.push(i64::from(envelope.source_device));
        self.envelope_type.push(envelope.envelope_type);
        self.content.push(&envelope.content);
        self.timestamp.push(
            i64::try_from(envelope.server_timestamp_ms)
                .map_err(|_| StoreError::Backend("envelope timestamp out of range".to_owned()))?,
        );
        Ok(())
    }
}

fn device_key(device: DeviceAddress) -> (i64, i64) {
    (device.account.0, i64::from(device.device_id))
}

/// A column's value; a type mismatch is an error, not a panic.
fn col<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index).map_err(pg)
}

fn col_u32(row: &Row, index: usize) -> Result<u32, StoreError> {
    to_u32(col(row, index)?)
}

fn to_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| out_of_range())
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| out_of_range())
}

fn out_of_range() -> StoreError {
    StoreError::Backend("a stored number is out of range".to_owned())
}

/// A database failure, for the log.
fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(describe(&e))
}

/// What went wrong, without stored values: PostgreSQL's DETAIL (and, for data exceptions,
/// even the message) can quote them, so only the SQLSTATE, the message of other errors and
/// the names of the schema objects involved are kept.
fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("postgres: {e}");
    };
    let code = db.code().code();
    let mut out = if code.starts_with("22") {
        format!("postgres: error {code} (data exception)")
    } else {
        format!("postgres: error {code}: {}", db.message())
    };
    for (what, name) in [
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
    ] {
        if let Some(name) = name {
            out.push_str(&format!(" [{what} {name}]"));
        }
    }
    out
}

/// A failed insert of an account or device: a taken username or key, or another failure.
fn conflict(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            match db.constraint() {
                Some(USERNAME_UNIQUE) => return StoreError::UsernameTaken,
                Some(AUTH_KEY_UNIQUE) => return StoreError::KeyTaken,
                _ => {}
            }
        }
    }
    pg(e)
}

/// Prefixes a backend error with the operation, for the log.
fn in_op(op: &'static str, e: StoreError) -> StoreError {
    match e {
        StoreError::Backend(message) => StoreError::Backend(format!("{op}: {message}")),
        other => other,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_keys_replace_earlier_ones_with_the_same_id() {
        let key = |id, byte| OneTimePrekey {
            id,
            public_key: vec![byte],
        };
        let keys = latest_by_id(vec![key(2, 1), key(1, 2), key(2, 3)], |key| key.id);
        assert_eq!(keys, vec![key(1, 2), key(2, 3)]);
    }

    #[tokio::test]
    async fn an_invalid_url_is_refused_without_repeating_it() {
        let error = PostgresStore::connect("postgres://user:hunter2@host:notaport/db")
            .await
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[tokio::test]
    async fn upgrades_a_version_1_database_giving_envelopes_their_senders() {
        let db = sotto_test_support::postgres::TestDatabase::create().await;
        let (old, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        old.batch_execute(SCHEMA_V1).await.unwrap();
        old.batch_execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL);
             INSERT INTO schema_version VALUES (1, 0);
             INSERT INTO accounts (id, username, identity_key, created_ms) OVERRIDING SYSTEM VALUE
             VALUES (7, 'alice', '\\x05', 0), (8, 'bob', '\\x05', 0);
             INSERT INTO devices (account, device_id, auth_key, registration_id,
               signed_prekey_id, signed_prekey, signed_prekey_signature,
               last_resort_kyber_id, last_resort_kyber, last_resort_kyber_signature,
               next_seq, mailbox_count, created_ms)
             VALUES (8, 1, '\\x08', 1, 1, '\\x05', '\\x00', 1, '\\x08', '\\x00', 2, 1, 0);
             INSERT INTO envelopes VALUES (8, 1, 1, 'alice', 1, 1, '\\x01', 0);",
        )
        .await
        .unwrap();
        let store = PostgresStore::connect(db.url()).await.unwrap();
        drop(store);
        let row = old
            .query_one(
                "SELECT (SELECT max(version) FROM schema_version), source_account FROM envelopes",
                &[],
            )
            .await
            .unwrap();
        let version = usize::try_from(row.get::<_, i32>(0)).unwrap();
        assert_eq!((version, row.get::<_, i64>(1)), (MIGRATIONS.len(), 7));
        drop(old);
        let _ = connection.await;
        db.drop_database().await;
    }

    #[tokio::test]
    async fn commits_are_synchronous_whatever_the_database_says() {
        let db = sotto_test_support::postgres::TestDatabase::create().await;
        {
            let (admin, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
            let connection = tokio::spawn(connection);
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} SET synchronous_commit = off",
                    db.name()
                ))
                .await
                .unwrap();
            drop(admin);
            let _ = connection.await;
        }
        let store = PostgresStore::connect(db.url()).await.unwrap();
        let client = store.client().await.unwrap();
        let row = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "on");
        drop(client);
        drop(store);
        db.drop_database().await;
    }
}
