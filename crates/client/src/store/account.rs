//! The `kv` table: the account and this device's own long-term keys (identity key pair, Noise
//! static key) and the state of its prekeys, one sealed value per name.
//!
//! Written at registration (in the transaction that creates the store) and by prekey
//! maintenance, in writes that wait for the disk like any other (see the map in `mod.rs`).

use prost::Message as _;
use sotto_protocol::IdentityKeyPair;
use zeroize::Zeroizing;

use super::rows::{corrupt, decode, table};
use super::{AccountRecord, PrekeyState, Tx};
use crate::error::StoreError;

/// Names of the `kv` entries.
mod kv {
    pub(super) const ACCOUNT: &str = "account";
    pub(super) const IDENTITY: &str = "identity";
    pub(super) const NOISE: &str = "noise";
    pub(super) const PREKEY_STATE: &str = "prekey_state";
}

impl Tx<'_> {
    pub(crate) fn account(&self) -> Result<AccountRecord, StoreError> {
        decode(table::KV, &self.kv_get(kv::ACCOUNT)?)
    }

    pub(crate) fn put_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        self.kv_put(kv::ACCOUNT, &account.encode_to_vec())
    }

    pub(crate) fn identity(&self) -> Result<IdentityKeyPair, StoreError> {
        IdentityKeyPair::try_from(&self.kv_get(kv::IDENTITY)?[..]).map_err(|_| corrupt(table::KV))
    }

    pub(crate) fn put_identity(&self, identity: &IdentityKeyPair) -> Result<(), StoreError> {
        self.kv_put(kv::IDENTITY, &identity.serialize())
    }

    pub(crate) fn noise_key(&self) -> Result<sotto_channel::StaticKeypair, StoreError> {
        sotto_channel::StaticKeypair::from_private_bytes(&self.kv_get(kv::NOISE)?)
            .map_err(|_| corrupt(table::KV))
    }

    pub(crate) fn put_noise_key(
        &self,
        key: &sotto_channel::StaticKeypair,
    ) -> Result<(), StoreError> {
        self.kv_put(kv::NOISE, key.private_bytes())
    }

    pub(crate) fn prekey_state(&self) -> Result<PrekeyState, StoreError> {
        decode(table::KV, &self.kv_get(kv::PREKEY_STATE)?)
    }

    pub(crate) fn put_prekey_state(&self, state: &PrekeyState) -> Result<(), StoreError> {
        self.kv_put(kv::PREKEY_STATE, &state.encode_to_vec())
    }

    fn kv_key(&self, name: &str) -> [u8; 32] {
        self.keys.lookup("kv", &[name.as_bytes()])
    }

    fn kv_get(&self, name: &'static str) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.get(table::KV, &self.kv_key(name))?
            .ok_or(StoreError::Missing(name))
    }

    fn kv_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(table::KV, &self.kv_key(name), value)
    }
}
