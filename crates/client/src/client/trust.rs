//! Identity keys of contacts: trust on first use, key-change detection, verification.

use sotto_protocol::IdentityKey;
use subtle::ConstantTimeEq;

use crate::error::ClientError;
use crate::store::{ContactRecord, Tx};

/// What seeing an identity key for a contact meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A new contact: the key is trusted on first use.
    New,
    /// The key we have.
    Known,
    /// A different key than we had: recorded, verification reset.
    Changed,
}

/// Records `key` as `username`'s identity key: trusted on first use; a different key than
/// the stored one replaces it, resets verification and marks the change (and, if the old key
/// was verified, blocks sending until the new one is verified).
pub(crate) fn observe(
    tx: &Tx<'_>,
    username: &str,
    key: &IdentityKey,
    now_ms: u64,
) -> Result<Seen, ClientError> {
    let serialized = key.serialize();
    match tx.contact(username)? {
        None => {
            tx.put_contact(&ContactRecord {
                username: username.to_owned(),
                identity_key: serialized.to_vec(),
                verified: false,
                key_changed: false,
                verified_key_changed: false,
                first_seen_ms: now_ms,
            })?;
            Ok(Seen::New)
        }
        Some(contact) if bool::from(contact.identity_key.ct_eq(&serialized[..])) => Ok(Seen::Known),
        Some(mut contact) => {
            contact.verified_key_changed |= contact.verified;
            contact.verified = false;
            contact.key_changed = true;
            contact.identity_key = serialized.to_vec();
            tx.put_contact(&contact)?;
            Ok(Seen::Changed)
        }
    }
}

/// The identity key trusted for `username`, if any.
pub(crate) fn trusted_key(tx: &Tx<'_>, username: &str) -> Result<Option<IdentityKey>, ClientError> {
    tx.contact(username)?
        .map(|contact| key_of(&contact))
        .transpose()
}

/// The identity key trusted for `username` (if any), to send with; refused while their
/// verified key has changed and the new one is not verified.
pub(crate) fn sendable_key(
    tx: &Tx<'_>,
    username: &str,
) -> Result<Option<IdentityKey>, ClientError> {
    match tx.contact(username)? {
        Some(contact) if contact.verified_key_changed => Err(ClientError::UntrustedIdentity {
            username: username.to_owned(),
        }),
        Some(contact) => key_of(&contact).map(Some),
        None => Ok(None),
    }
}

fn key_of(contact: &ContactRecord) -> Result<IdentityKey, ClientError> {
    IdentityKey::try_from(&contact.identity_key[..])
        .map_err(|_| crate::error::StoreError::Corrupt { table: "contacts" }.into())
}

/// Marks the current key of `username` verified.
pub(crate) fn verify(tx: &Tx<'_>, username: &str) -> Result<(), ClientError> {
    let mut contact = tx
        .contact(username)?
        .ok_or_else(|| ClientError::UnknownUser(username.to_owned()))?;
    contact.verified = true;
    contact.key_changed = false;
    contact.verified_key_changed = false;
    tx.put_contact(&contact)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;
    use sotto_protocol::IdentityKeyPair;

    #[test]
    fn trust_on_first_use_then_detect_changes() {
        let (_dir, store) = temp_store();
        let mut rng = rand::rng();
        let first = *IdentityKeyPair::generate(&mut rng).identity_key();
        let second = *IdentityKeyPair::generate(&mut rng).identity_key();
        store
            .write(|tx| {
                assert_eq!(observe(tx, "bob", &first, 1)?, Seen::New);
                assert_eq!(observe(tx, "bob", &first, 2)?, Seen::Known);
                let contact = tx.contact("bob")?.unwrap();
                assert!(!contact.verified && !contact.key_changed);
                assert_eq!(contact.first_seen_ms, 1);
                // An unverified contact's key changes: noted, sending still allowed.
                assert_eq!(observe(tx, "bob", &second, 3)?, Seen::Changed);
                let contact = tx.contact("bob")?.unwrap();
                assert!(contact.key_changed && !contact.verified && !contact.verified_key_changed);
                assert!(trusted_key(tx, "bob")?.unwrap().ct_eq(&second));
                assert!(sendable_key(tx, "bob")?.unwrap().ct_eq(&second));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_verified_key_that_changes_blocks_sending_until_verified_again() {
        let (_dir, store) = temp_store();
        let mut rng = rand::rng();
        let first = *IdentityKeyPair::generate(&mut rng).identity_key();
        let second = *IdentityKeyPair::generate(&mut rng).identity_key();
        store
            .write(|tx| {
                observe(tx, "bob", &first, 1)?;
                verify(tx, "bob")?;
                assert!(tx.contact("bob")?.unwrap().verified);
                assert_eq!(observe(tx, "bob", &second, 2)?, Seen::Changed);
                let contact = tx.contact("bob")?.unwrap();
                assert!(!contact.verified && contact.key_changed && contact.verified_key_changed);
                assert!(matches!(
                    sendable_key(tx, "bob"),
                    Err(ClientError::UntrustedIdentity { username }) if username == "bob"
                ));
                assert!(trusted_key(tx, "bob")?.unwrap().ct_eq(&second));
                // Seeing the new key again does not clear the block; verifying it does.
                assert_eq!(observe(tx, "bob", &second, 3)?, Seen::Known);
                assert!(sendable_key(tx, "bob").is_err());
                verify(tx, "bob")?;
                assert!(sendable_key(tx, "bob")?.unwrap().ct_eq(&second));
                let contact = tx.contact("bob")?.unwrap();
                assert!(contact.verified && !contact.key_changed);
                assert!(matches!(
                    verify(tx, "carol"),
                    Err(ClientError::UnknownUser(_))
                ));
                Ok(())
            })
            .unwrap();
    }
}
