//! The message history: every message sent and received, in one sequence, each row sealed
//! together with its sequence number and its peer's key, so that rows cannot be moved from one
//! conversation to another nor reordered.
//!
//! A received message is added in its batch's commit, a sent one in its send's: commits that
//! mostly do not wait for the disk (see the map in `mod.rs`). A power cut can take a sent
//! message out of the history if it comes within [`DEFERRED_SYNC_DELAY`] of the send; a
//! received one the server delivers again, as it is acknowledged only once on disk.
//!
//! [`DEFERRED_SYNC_DELAY`]: crate::consts::DEFERRED_SYNC_DELAY

use prost::Message as _;
use rusqlite::params;

use super::rows::{corrupt, decode, table};
use super::{MessageRecord, Tx};
use crate::error::StoreError;

impl Tx<'_> {
    fn message_row(seq: i64, owner: &[u8; 32]) -> [u8; 40] {
        let mut row = [0u8; 40];
        row[..8].copy_from_slice(&seq.to_be_bytes());
        row[8..].copy_from_slice(owner);
        row
    }

    /// Appends a message to the history; returns its sequence number.
    pub(crate) fn add_message(&self, message: &MessageRecord) -> Result<i64, StoreError> {
        let owner = self.user_key(&message.peer);
        let seq: i64 = self.query_row_required(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages",
            [],
            |row| row.get(0),
        )?;
        let sealed = self.keys.seal(
            table::MESSAGES,
            &Self::message_row(seq, &owner),
            &message.encode_to_vec(),
        );
        self.exec(
            "INSERT INTO messages (seq, owner, v) VALUES (?1, ?2, ?3)",
            params![seq, &owner[..], sealed],
        )?;
        Ok(seq)
    }

    pub(crate) fn delete_message(&self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// The last `limit` messages with `peer`, oldest first.
    pub(crate) fn history(
        &self,
        peer: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let owner = self.user_key(peer);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self
            .conn
            .prepare("SELECT seq, v FROM messages WHERE owner = ?1 ORDER BY seq DESC LIMIT ?2")?;
        let rows = statement.query_map(params![&owner[..], limit], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, sealed) = row?;
            let bytes =
                self.keys
                    .open(table::MESSAGES, &Self::message_row(seq, &owner), &sealed)?;
            let message: MessageRecord = decode(table::MESSAGES, &bytes)?;
            if message.peer != peer {
                return Err(corrupt(table::MESSAGES));
            }
            out.push(message);
        }
        out.reverse();
        Ok(out)
    }
}
