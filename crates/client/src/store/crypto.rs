//! The store's keys: where the master key comes from (a passphrase through Argon2id, or a key
//! file), the subkeys derived from it, and the sealing of values and hashing of lookup keys.
//!
//! From the 32-byte master key and the profile's random salt, HKDF-SHA256 derives three
//! independent subkeys: the AES-256-GCM key that seals every stored value, the HMAC-SHA256
//! key that turns lookup keys (usernames, ids) into opaque row keys, and the key-check value
//! kept in the clear, which tells a wrong key from a right one without decrypting anything.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::os;
use crate::consts::{ARGON2_ITERATIONS, ARGON2_LANES, ARGON2_MEMORY_KIB, KEY_FILE_LEN, SALT_LEN};
use crate::error::{ClientError, StoreError};

/// How the local store's key is obtained.
pub enum StoreKey {
    /// Argon2id over the passphrase with the profile's salt.
    Passphrase(Zeroizing<String>),
    /// 32 random bytes in a file (created by `register` if missing, mode 0600).
    KeyFile(PathBuf),
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Passphrase(_) => f.write_str("StoreKey::Passphrase(..)"),
            Self::KeyFile(path) => f.debug_tuple("StoreKey::KeyFile").field(path).finish(),
        }
    }
}

/// The `kdf` meta entry of a passphrase profile: the algorithm and its parameters, so that a
/// later version with other parameters still opens it (or knows it cannot).
const KDF_ARGON2ID: &str = "argon2id-v19-m65536-t3-p1";
/// The `kdf` meta entry of a key-file profile.
const KDF_KEY_FILE: &str = "key-file";

/// Version byte in front of every sealed value.
const SEALED_V1: u8 = 1;
/// AES-GCM's nonce.
const NONCE_LEN: usize = 12;
/// AES-GCM's tag.
const TAG_LEN: usize = 16;
/// Binds every sealed value and lookup key to this store format.
const DOMAIN: &[u8] = b"sotto-client store v1";

/// The key material of an open store.
pub(crate) struct StoreKeys {
    cipher: Aes256Gcm,
    lookup: Zeroizing<[u8; 32]>,
}

/// What a new profile writes into its plaintext meta table.
pub(crate) struct NewProfileKeys {
    pub(crate) keys: StoreKeys,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) kdf: &'static str,
    pub(crate) check: [u8; 32],
}

impl StoreKey {
    /// Derives the keys of a new profile with a fresh salt, creating the key file if needed.
    pub(crate) fn create(&self) -> Result<NewProfileKeys, ClientError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let (master, kdf) = match self {
            Self::Passphrase(passphrase) => (argon2id(passphrase, &salt)?, KDF_ARGON2ID),
            Self::KeyFile(path) => (read_or_create_key_file(path)?, KDF_KEY_FILE),
        };
        let (keys, check) = derive(&master, &salt);
        Ok(NewProfileKeys {
            keys,
            salt,
            kdf,
            check,
        })
    }

    /// Derives the keys of an existing profile and checks them against its key-check value.
    pub(crate) fn open(
        &self,
        salt: &[u8],
        kdf: &str,
        check: &[u8],
    ) -> Result<StoreKeys, ClientError> {
        let master = match (self, kdf) {
            (Self::Passphrase(passphrase), KDF_ARGON2ID) => argon2id(passphrase, salt)?,
            (Self::KeyFile(path), KDF_KEY_FILE) => read_key_file(path)?,
            // The profile is protected the other way: this key cannot be the right one.
            (Self::Passphrase(_), KDF_KEY_FILE) | (Self::KeyFile(_), KDF_ARGON2ID) => {
                return Err(ClientError::WrongKey)
            }
            _ => return Err(StoreError::UnknownKdf.into()),
        };
        let (keys, expected) = derive(&master, salt);
        if !bool::from(expected.ct_eq(check)) {
            return Err(ClientError::WrongKey);
        }
        Ok(keys)
    }
}

fn argon2id(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    if passphrase.is_empty() {
        return Err(ClientError::EmptyPassphrase);
    }
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, Some(32))
        .map_err(|_| StoreError::UnknownKdf)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut out[..])
        .map_err(|_| StoreError::UnknownKdf)?;
    Ok(out)
}

fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    let bytes = os::read_secret_file(path)?;
    let key: [u8; KEY_FILE_LEN] = bytes[..].try_into().map_err(|_| ClientError::BadKeyFile {
        expected: KEY_FILE_LEN,
        actual: bytes.len(),
    })?;
    Ok(Zeroizing::new(key))
}

fn read_or_create_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    let mut key = Zeroizing::new([0u8; KEY_FILE_LEN]);
    rand::rng().fill_bytes(&mut key[..]);
    if os::create_secret_file(path, &key[..])? {
        Ok(key)
    } else {
        read_key_file(path)
    }
}

/// HKDF-SHA256 from the master key: the value key, the lookup key and the key check.
fn derive(master: &[u8; 32], salt: &[u8]) -> (StoreKeys, [u8; 32]) {
    let hkdf = hkdf::Hkdf::<Sha256>::new(Some(salt), master);
    let mut value = Zeroizing::new([0u8; 32]);
    let mut lookup = Zeroizing::new([0u8; 32]);
    let mut check = [0u8; 32];
    // Output lengths of 32 bytes are always within HKDF-SHA256's limit.
    let expand = |info: &[u8], out: &mut [u8]| {
        hkdf.expand(info, out)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF length"))
    };
    expand(b"sotto-client store v1: value key", &mut value[..]);
    expand(b"sotto-client store v1: lookup key", &mut lookup[..]);
    expand(b"sotto-client store v1: key check", &mut check);
    let cipher = Aes256Gcm::new((&*value).into());
    (StoreKeys { cipher, lookup }, check)
}

impl StoreKeys {
    /// Seals `plain` for the row `row` of `table`: `1 || nonce || AES-256-GCM(plain)` with the
    /// table and row in the associated data, so a value moved to another row does not open.
    pub(crate) fn seal(&self, table: &str, row: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(table, row);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            // AES-GCM only fails for inputs beyond 64 GiB.
            .unwrap_or_else(|_| unreachable!("stored values are far below AES-GCM's limit"));
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens what [`StoreKeys::seal`] sealed for the same table and row.
    pub(crate) fn open(
        &self,
        table: &'static str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let corrupt = || StoreError::Corrupt { table };
        let (&version, rest) = sealed.split_first().ok_or_else(corrupt)?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = associated_data(table, row);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| corrupt())
    }

    /// The opaque row key for a lookup key: HMAC-SHA256 over the domain and the
    /// length-prefixed parts.
    pub(crate) fn lookup(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(DOMAIN);
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The opaque row key for an item of a run of items that are written together (envelopes
    /// with consecutive ids, one sender's messages of one minute): the first half is the
    /// lookup key of the run, the second half that of the item. Keys of one run sort next to
    /// each other, so a batch of them changes a few B-tree pages rather than one page each.
    pub(crate) fn lookup_in_run(&self, domain: &str, run: &[&[u8]], item: &[&[u8]]) -> [u8; 32] {
        let mut key = self.lookup(&format!("{domain} run"), run);
        let item = self.lookup(domain, item);
        key[16..].copy_from_slice(&item[16..]);
        key
    }
}

fn associated_data(table: &str, row: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + table.len() + row.len() + 2);
    aad.extend_from_slice(DOMAIN);
    aad.push(0);
    aad.extend_from_slice(table.as_bytes());
    aad.push(0);
    aad.extend_from_slice(row);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> StoreKeys {
        derive(&[7u8; 32], &[1u8; SALT_LEN]).0
    }

    #[test]
    fn sealed_values_open_only_in_their_row() {
        let keys = keys();
        let sealed = keys.seal("contacts", b"row-a", b"hello");
        assert_eq!(
            &keys.open("contacts", b"row-a", &sealed).unwrap()[..],
            b"hello"
        );
        assert!(keys.open("contacts", b"row-b", &sealed).is_err());
        assert!(keys.open("sessions", b"row-a", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(keys.open("contacts", b"row-a", &tampered).is_err());
        assert!(keys.open("contacts", b"row-a", &sealed[..10]).is_err());
        assert!(keys.open("contacts", b"row-a", &[]).is_err());
        // A fresh nonce each time: the same value seals differently.
        assert_ne!(sealed, keys.seal("contacts", b"row-a", b"hello"));
    }

    #[test]
    fn lookup_keys_separate_domains_and_parts() {
        let keys = keys();
        assert_eq!(
            keys.lookup("user", &[b"bob"]),
            keys.lookup("user", &[b"bob"])
        );
        assert_ne!(keys.lookup("user", &[b"bob"]), keys.lookup("kv", &[b"bob"]));
        assert_ne!(
            keys.lookup("user", &[b"ab", b"c"]),
            keys.lookup("user", &[b"a", b"bc"])
        );
        let other = derive(&[8u8; 32], &[1u8; SALT_LEN]).0;
        assert_ne!(
            keys.lookup("user", &[b"bob"]),
            other.lookup("user", &[b"bob"])
        );
    }

    #[test]
    fn keys_of_one_run_share_their_first_half_only() {
        let keys = keys();
        let key = |run: &[u8], item: &[u8]| keys.lookup_in_run("envelope", &[run], &[item]);
        let (a, b) = (key(b"run 1", b"item 1"), key(b"run 1", b"item 2"));
        assert_eq!(a[..16], b[..16]);
        assert_ne!(a[16..], b[16..]);
        assert_eq!(a, key(b"run 1", b"item 1"));
        let other_run = key(b"run 2", b"item 1");
        assert_ne!(a[..16], other_run[..16]);
        assert_ne!(
            a,
            keys.lookup_in_run("message id", &[b"run 1"], &[b"item 1"])
        );
    }

    #[test]
    fn wrong_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = StoreKey::KeyFile(dir.path().join("key"));
        let new = file.create().unwrap();
        assert!(file.open(&new.salt, new.kdf, &new.check).is_ok());
        let other = StoreKey::KeyFile(dir.path().join("other"));
        other.create().unwrap();
        assert!(matches!(
            other.open(&new.salt, new.kdf, &new.check),
            Err(ClientError::WrongKey)
        ));
        let pass = StoreKey::Passphrase(Zeroizing::new("x".into()));
        assert!(matches!(
            pass.open(&new.salt, new.kdf, &new.check),
            Err(ClientError::WrongKey)
        ));
        assert!(matches!(
            file.open(&new.salt, "scrypt", &new.check),
            Err(ClientError::Store(StoreError::UnknownKdf))
        ));
        std::fs::write(dir.path().join("short"), [1u8; 31]).unwrap();
        assert!(matches!(
            StoreKey::KeyFile(dir.path().join("short")).open(&new.salt, new.kdf, &new.check),
            Err(ClientError::BadKeyFile { actual: 31, .. })
        ));
    }

    #[test]
    fn passphrases_derive_through_argon2id() {
        let right = StoreKey::Passphrase(Zeroizing::new("correct horse".into()));
        let new = right.create().unwrap();
        assert_eq!(new.kdf, KDF_ARGON2ID);
        assert!(right.open(&new.salt, new.kdf, &new.check).is_ok());
        let wrong = StoreKey::Passphrase(Zeroizing::new("correct horse!".into()));
        assert!(matches!(
            wrong.open(&new.salt, new.kdf, &new.check),
            Err(ClientError::WrongKey)
        ));
        let empty = StoreKey::Passphrase(Zeroizing::new(String::new()));
        assert!(matches!(empty.create(), Err(ClientError::EmptyPassphrase)));
        assert!(!format!("{right:?}").contains("horse"));
    }
}
