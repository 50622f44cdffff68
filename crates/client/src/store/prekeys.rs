//! This device's prekeys, private halves: one-time (classic and Kyber), signed, and Kyber
//! last-resort, each in a table of its own, keyed by an HMAC of its id.
//!
//! Signed and last-resort keys stay after they are replaced, with the time of their
//! replacement in front of the record, until prekey maintenance deletes them; one-time keys
//! are deleted once used. Registration and prekey maintenance write them in writes that wait
//! for the disk: a prekey published must still be here after a crash. A received message
//! that uses a one-time key deletes it in its batch's commit, which does not wait: the message
//! is acknowledged only once that commit is synced, so a crash before brings back both.

use sotto_protocol::{
    KyberPreKeyId, KyberPreKeyRecord, PreKeyId, PreKeyRecord, SignedPreKeyId, SignedPreKeyRecord,
};
use zeroize::Zeroizing;

use super::rows::{corrupt, table};
use super::Tx;
use crate::error::StoreError;

/// `replaced_at_ms` (8 bytes, big-endian; 0 = current) followed by a record.
fn split_replaced<'a>(table: &'static str, bytes: &'a [u8]) -> Result<(u64, &'a [u8]), StoreError> {
    if bytes.len() < 8 {
        return Err(corrupt(table));
    }
    let (head, record) = bytes.split_at(8);
    let mut at = [0u8; 8];
    at.copy_from_slice(head);
    Ok((u64::from_be_bytes(at), record))
}

fn with_replaced(replaced_at_ms: Option<u64>, record: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 + record.len()));
    out.extend_from_slice(&replaced_at_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(record);
    out
}

impl Tx<'_> {
    fn prekey_key(&self, domain: &str, id: u32) -> [u8; 32] {
        self.keys.lookup(domain, &[&id.to_be_bytes()])
    }

    pub(crate) fn one_time_prekey(&self, id: PreKeyId) -> Result<Option<PreKeyRecord>, StoreError> {
        let key = self.prekey_key(table::ONE_TIME_PREKEYS, id.into());
        self.get(table::ONE_TIME_PREKEYS, &key)?
            .map(|bytes| {
                PreKeyRecord::try_from(&bytes[..]).map_err(|_| corrupt(table::ONE_TIME_PREKEYS))
            })
            .transpose()
    }

    pub(crate) fn put_one_time_prekey(&self, record: &PreKeyRecord) -> Result<(), StoreError> {
        let key = self.prekey_key(table::ONE_TIME_PREKEYS, record.id().into());
        self.put(
            table::ONE_TIME_PREKEYS,
            &key,
            &Zeroizing::new(record.serialize()),
        )
    }

    pub(crate) fn delete_one_time_prekey(&self, id: PreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::ONE_TIME_PREKEYS,
            &self.prekey_key(table::ONE_TIME_PREKEYS, id.into()),
        )?;
        Ok(())
    }

    /// A Kyber prekey by id: a one-time key (`true`) or a last-resort one (`false`).
    pub(crate) fn kyber_prekey(
        &self,
        id: KyberPreKeyId,
    ) -> Result<Option<(KyberPreKeyRecord, bool)>, StoreError> {
        let key = self.prekey_key(table::ONE_TIME_KYBER, id.into());
        if let Some(bytes) = self.get(table::ONE_TIME_KYBER, &key)? {
            let record = KyberPreKeyRecord::try_from(&bytes[..])
                .map_err(|_| corrupt(table::ONE_TIME_KYBER))?;
            return Ok(Some((record, true)));
        }
        let key = self.prekey_key(table::LAST_RESORT_KYBER, id.into());
        match self.get(table::LAST_RESORT_KYBER, &key)? {
            Some(bytes) => {
                let (_, record) = split_replaced(table::LAST_RESORT_KYBER, &bytes)?;
                let record = KyberPreKeyRecord::try_from(record)
                    .map_err(|_| corrupt(table::LAST_RESORT_KYBER))?;
                Ok(Some((record, false)))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn put_one_time_kyber(&self, record: &KyberPreKeyRecord) -> Result<(), StoreError> {
        let key = self.prekey_key(table::ONE_TIME_KYBER, record.id().into());
        self.put(
            table::ONE_TIME_KYBER,
            &key,
            &Zeroizing::new(record.serialize()),
        )
    }

    pub(crate) fn delete_one_time_kyber(&self, id: KyberPreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::ONE_TIME_KYBER,
            &self.prekey_key(table::ONE_TIME_KYBER, id.into()),
        )?;
        Ok(())
    }

    /// Stores a last-resort Kyber prekey; `replaced_at_ms` is `None` while it is current.
    pub(crate) fn put_last_resort_kyber(
        &self,
        record: &KyberPreKeyRecord,
        replaced_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = self.prekey_key(table::LAST_RESORT_KYBER, record.id().into());
        self.put(
            table::LAST_RESORT_KYBER,
            &key,
            &with_replaced(replaced_at_ms, &record.serialize()),
        )
    }

    /// Every last-resort Kyber prekey with the time it was replaced (`None`: current).
    pub(crate) fn last_resort_kybers(
        &self,
    ) -> Result<Vec<(KyberPreKeyRecord, Option<u64>)>, StoreError> {
        self.all(table::LAST_RESORT_KYBER)?
            .iter()
            .map(|bytes| {
                let (at, record) = split_replaced(table::LAST_RESORT_KYBER, bytes)?;
                let record = KyberPreKeyRecord::try_from(record)
                    .map_err(|_| corrupt(table::LAST_RESORT_KYBER))?;
                Ok((record, (at != 0).then_some(at)))
            })
            .collect()
    }

    pub(crate) fn delete_last_resort_kyber(&self, id: KyberPreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::LAST_RESORT_KYBER,
            &self.prekey_key(table::LAST_RESORT_KYBER, id.into()),
        )?;
        Ok(())
    }

    pub(crate) fn signed_prekey(
        &self,
        id: SignedPreKeyId,
    ) -> Result<Option<SignedPreKeyRecord>, StoreError> {
        let key = self.prekey_key(table::SIGNED_PREKEYS, id.into());
        match self.get(table::SIGNED_PREKEYS, &key)? {
            Some(bytes) => {
                let (_, record) = split_replaced(table::SIGNED_PREKEYS, &bytes)?;
                SignedPreKeyRecord::try_from(record)
                    .map(Some)
                    .map_err(|_| corrupt(table::SIGNED_PREKEYS))
            }
            None => Ok(None),
        }
    }

    /// Stores a signed prekey; `replaced_at_ms` is `None` while it is current.
    pub(crate) fn put_signed_prekey(
        &self,
        record: &SignedPreKeyRecord,
        replaced_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = self.prekey_key(table::SIGNED_PREKEYS, record.id().into());
        self.put(
            table::SIGNED_PREKEYS,
            &key,
            &with_replaced(replaced_at_ms, &Zeroizing::new(record.serialize())),
        )
    }

    /// Every signed prekey with the time it was replaced (`None`: current).
    pub(crate) fn signed_prekeys(
        &self,
    ) -> Result<Vec<(SignedPreKeyRecord, Option<u64>)>, StoreError> {
        self.all(table::SIGNED_PREKEYS)?
            .iter()
            .map(|bytes| {
                let (at, record) = split_replaced(table::SIGNED_PREKEYS, bytes)?;
                let record = SignedPreKeyRecord::try_from(record)
                    .map_err(|_| corrupt(table::SIGNED_PREKEYS))?;
                Ok((record, (at != 0).then_some(at)))
            })
            .collect()
    }

    pub(crate) fn delete_signed_prekey(&self, id: SignedPreKeyId) -> Result<(), StoreError> {
        self.delete(
            table::SIGNED_PREKEYS,
            &self.prekey_key(table::SIGNED_PREKEYS, id.into()),
        )?;
        Ok(())
    }
}
