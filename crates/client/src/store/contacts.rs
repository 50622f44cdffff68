//! Contacts: each peer's username and identity key as first seen (trust on first use), whether
//! it changed since, and whether the user verified it; keyed by an HMAC of the username.
//!
//! A contact's key is recorded when first seen and when it changes: in the commit of the
//! received message that shows it, which does not wait for the disk (the message is
//! acknowledged only once on disk, so a crash before brings it back and the key is seen
//! again), or of the send that starts a session from a fetched bundle, which does. Marking a
//! contact verified waits for the disk (see the map in `mod.rs`).

use prost::Message as _;

use super::rows::{corrupt, decode, table};
use super::{ContactRecord, Tx};
use crate::error::StoreError;

impl Tx<'_> {
    pub(crate) fn contact(&self, username: &str) -> Result<Option<ContactRecord>, StoreError> {
        let record: Option<ContactRecord> = self
            .get(table::CONTACTS, &self.user_key(username))?
            .map(|bytes| decode(table::CONTACTS, &bytes))
            .transpose()?;
        match record {
            Some(record) if record.username != username => Err(corrupt(table::CONTACTS)),
            other => Ok(other),
        }
    }

    pub(crate) fn put_contact(&self, contact: &ContactRecord) -> Result<(), StoreError> {
        self.put(
            table::CONTACTS,
            &self.user_key(&contact.username),
            &contact.encode_to_vec(),
        )
    }

    /// Every contact, by username.
    pub(crate) fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let mut out: Vec<ContactRecord> = self
            .all(table::CONTACTS)?
            .iter()
            .map(|bytes| decode(table::CONTACTS, bytes))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }
}
