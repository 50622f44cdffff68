//! What was received already, so that nothing is shown twice: the ids of the envelopes
//! processed (the server may deliver one again until its acknowledgement arrives) and the
//! (sender, message id) pairs of the messages received (a sender may send a copy of one, when
//! it did not learn whether the first went through).
//!
//! Both are recorded in the commit that stores what was received, so they reach the disk with
//! it: an envelope is acknowledged only once that commit is synced (see the map in `mod.rs`).
//! Only the newest are kept ([`PROCESSED_IDS_KEPT`], [`MESSAGE_IDS_KEPT`]); row keys come in
//! runs, so that ids received together share B-tree pages.

use super::Tx;
use crate::consts::{MESSAGE_IDS_KEPT, PROCESSED_IDS_KEPT, PRUNE_EVERY};
use crate::content::MessageId;
use crate::error::StoreError;

impl Tx<'_> {
    /// Envelope ids come in order: runs of 256 consecutive ids share B-tree pages.
    fn envelope_key(&self, envelope_id: u64) -> [u8; 32] {
        self.keys.lookup_in_run(
            "envelope",
            &[&(envelope_id >> 8).to_be_bytes()],
            &[&envelope_id.to_be_bytes()],
        )
    }

    pub(crate) fn is_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        let key = self.envelope_key(envelope_id);
        Ok(self
            .query_row("SELECT 1 FROM processed WHERE k = ?1", [&key[..]], |_| {
                Ok(())
            })?
            .is_some())
    }

    /// Records an envelope as processed; the newest [`PROCESSED_IDS_KEPT`] are remembered (see
    /// [`Tx::due_for_pruning`]).
    pub(crate) fn mark_processed(&self, envelope_id: u64) -> Result<(), StoreError> {
        let key = self.envelope_key(envelope_id);
        let inserted = self.exec(
            "INSERT OR IGNORE INTO processed (k) VALUES (?1)",
            [&key[..]],
        )?;
        if inserted > 0 && self.due_for_pruning() {
            self.exec(
                "DELETE FROM processed WHERE seq <= (SELECT MAX(seq) FROM processed) - ?1",
                [PROCESSED_IDS_KEPT],
            )?;
        }
        Ok(())
    }

    // -- received message ids ------------------------------------------------------------------

    /// Records that `sender` sent a message with `message_id` at `sent_ms` (by its clock);
    /// `false` if that was recorded already (a copy: copies carry the first's id and time).
    /// The newest [`MESSAGE_IDS_KEPT`] are remembered. A sender's messages of one minute or
    /// so (2^16 ms) share B-tree pages.
    pub(crate) fn record_message_id(
        &self,
        sender: &str,
        message_id: &MessageId,
        sent_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = self.keys.lookup_in_run(
            "message id",
            &[sender.as_bytes(), &(sent_ms >> 16).to_be_bytes()],
            &[sender.as_bytes(), &message_id[..]],
        );
        let inserted = self.exec(
            "INSERT OR IGNORE INTO received_ids (k) VALUES (?1)",
            [&key[..]],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        if self.due_for_pruning() {
            self.exec(
                "DELETE FROM received_ids WHERE seq <= (SELECT MAX(seq) FROM received_ids) - ?1",
                [MESSAGE_IDS_KEPT],
            )?;
        }
        Ok(true)
    }

    /// Whether the row just inserted (into a table whose `seq` counts up) is one after which
    /// the oldest rows are forgotten: every [`PRUNE_EVERY`]th, so that a table holds at most
    /// that many rows more than it keeps.
    fn due_for_pruning(&self) -> bool {
        self.conn.last_insert_rowid() % PRUNE_EVERY == 0
    }
}
