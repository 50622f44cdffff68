//! Sealed rows: how every table but `meta` holds its values, and the statements that read and
//! write them.
//!
//! A value is sealed with AES-256-GCM under the store key ([`super::crypto`]) with its table
//! and row key in the associated data, so that a row moved to another key or table no longer
//! opens ([`corrupt`]). Row keys are HMACs of what they name (a username, an id): the file
//! shows no names. The tables keyed by one such HMAC (`k`, `v`) share [`Tx::get`],
//! [`Tx::put`], [`Tx::delete`] and [`Tx::all`]; the others (sessions, messages, reservations)
//! write their rows themselves, through the same cached statements ([`Tx::exec`]).
//!
//! Nothing here decides when a write reaches the disk: every statement runs inside the
//! transaction of the [`Tx`] it is called on (see `transactions.rs`).

use rusqlite::{params, OptionalExtension};
use zeroize::Zeroizing;

use super::Tx;
use crate::error::StoreError;

/// Table names: part of every sealed value's associated data.
pub(super) mod table {
    pub(in crate::store) const KV: &str = "kv";
    pub(in crate::store) const ONE_TIME_PREKEYS: &str = "one_time_prekeys";
    pub(in crate::store) const ONE_TIME_KYBER: &str = "one_time_kyber";
    pub(in crate::store) const LAST_RESORT_KYBER: &str = "last_resort_kyber";
    pub(in crate::store) const SIGNED_PREKEYS: &str = "signed_prekeys";
    pub(in crate::store) const CONTACTS: &str = "contacts";
    pub(in crate::store) const SESSIONS: &str = "sessions";
    pub(in crate::store) const MESSAGES: &str = "messages";
    pub(in crate::store) const SEND_RESERVATIONS: &str = "send_reservations";
}

/// A row of `table` that does not open or decode: tampered with, or damaged.
pub(super) fn corrupt(table: &'static str) -> StoreError {
    StoreError::Corrupt { table }
}

/// Decodes a protobuf record opened from `table`.
pub(super) fn decode<M: prost::Message + Default>(
    table: &'static str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|_| corrupt(table))
}

impl Tx<'_> {
    // -- statements (cached: the same few statements run for every message) -----------------

    pub(super) fn exec(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        Ok(self.conn.prepare_cached(sql)?.execute(params)?)
    }

    pub(super) fn query_row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params, f)
            .optional()?)
    }

    pub(super) fn query_row_required<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        Ok(self.conn.prepare_cached(sql)?.query_row(params, f)?)
    }

    // -- generic keyed tables ------------------------------------------------------------------

    pub(super) fn get(
        &self,
        table: &'static str,
        key: &[u8; 32],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let sealed: Option<Vec<u8>> = self.query_row(
            &format!("SELECT v FROM {table} WHERE k = ?1"),
            [&key[..]],
            |row| row.get(0),
        )?;
        sealed
            .map(|sealed| self.keys.open(table, key, &sealed))
            .transpose()
    }

    pub(super) fn put(
        &self,
        table: &'static str,
        key: &[u8; 32],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let sealed = self.keys.seal(table, key, value);
        self.exec(
            &format!("INSERT INTO {table} (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v"),
            params![&key[..], sealed],
        )?;
        Ok(())
    }

    pub(super) fn delete(&self, table: &'static str, key: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute(&format!("DELETE FROM {table} WHERE k = ?1"), [&key[..]])?
            > 0)
    }

    pub(super) fn all(&self, table: &'static str) -> Result<Vec<Zeroizing<Vec<u8>>>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!("SELECT k, v FROM {table}"))?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, sealed) = row?;
            out.push(self.keys.open(table, &key, &sealed)?);
        }
        Ok(out)
    }

    pub(super) fn user_key(&self, username: &str) -> [u8; 32] {
        self.keys.lookup("user", &[username.as_bytes()])
    }
}
