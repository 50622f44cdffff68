//! The store's schema, versioned by SQLite's `user_version`: migration `i` takes the schema
//! from version `i` to `i + 1`. Never edit a released migration; append a new one.
//!
//! Only `meta` is plaintext (the salt, the key derivation's name and the key-check value).
//! Every other value is sealed (see `crypto.rs`), and every lookup key is an HMAC; the `seq`
//! columns only order rows.

use rusqlite::Connection;

use crate::error::StoreError;

/// The migrations, in order.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE one_time_prekeys (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE one_time_kyber (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE last_resort_kyber (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE signed_prekeys (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE contacts (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE sessions (owner BLOB NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL,
                            PRIMARY KEY (owner, k)) WITHOUT ROWID;
     CREATE TABLE messages (seq INTEGER PRIMARY KEY, owner BLOB NOT NULL, v BLOB NOT NULL);
     CREATE INDEX messages_by_owner ON messages (owner, seq);
     CREATE TABLE processed (seq INTEGER PRIMARY KEY, k BLOB NOT NULL UNIQUE);",
    // 2: the (sender, message id) pairs of received messages, to keep one of each.
    "CREATE TABLE received_ids (seq INTEGER PRIMARY KEY, k BLOB NOT NULL UNIQUE);",
    // 3: how far each sending chain may have sent beyond the last sync, keyed like `sessions`,
    // with the (random) opening of the store that made the reservation.
    "CREATE TABLE send_reservations (owner BLOB NOT NULL, k BLOB NOT NULL,
                                     opener BLOB NOT NULL, v BLOB NOT NULL,
                                     PRIMARY KEY (owner, k)) WITHOUT ROWID;",
];

/// The schema version this program writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The schema version of an open database (0 for an empty one).
pub(crate) fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Brings the schema up to [`SCHEMA_VERSION`], all migrations in one transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for migration in &MIGRATIONS[found as usize..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::NewerSchema { .. })
        ));
    }
}
