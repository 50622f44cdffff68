//! Structural checks of uploaded keys. The server cannot check signatures against anything it
//! trusts (clients do that); it checks that every key has the shape the protocol gives it, so
//! that nothing malformed is stored and handed to other clients.

use std::collections::HashSet;

use sotto_api::{
    validate_username, OneTimePrekey, Register, SignedPrekey, UploadPrekeys, MAX_PREKEYS_PER_UPLOAD,
};

use crate::reply::RequestError;
use crate::store::{NewDevice, PrekeyUpload};

/// A Curve25519 public key in Signal's encoding: the type byte and 32 bytes.
const EC_KEY_LEN: usize = 33;
/// Signal's type byte of a Curve25519 public key.
const EC_KEY_TYPE: u8 = 0x05;
/// A Kyber1024 public key in Signal's encoding: the type byte and 1568 bytes.
const KYBER_KEY_LEN: usize = 1569;
/// Signal's type byte of a Kyber1024 public key.
const KYBER_KEY_TYPE: u8 = 0x08;
/// An XEdDSA signature.
const SIGNATURE_LEN: usize = 64;
/// Registration ids have 14 bits, as Signal's.
const MAX_REGISTRATION_ID: u32 = 0x3fff;

fn ec_key(what: &str, key: &[u8]) -> Result<(), RequestError> {
    if key.len() != EC_KEY_LEN || key[0] != EC_KEY_TYPE {
        return Err(RequestError::bad(format!(
            "{what}: an EC public key has {EC_KEY_LEN} bytes starting with 0x05"
        )));
    }
    Ok(())
}

fn kyber_key(what: &str, key: &[u8]) -> Result<(), RequestError> {
    if key.len() != KYBER_KEY_LEN || key[0] != KYBER_KEY_TYPE {
        return Err(RequestError::bad(format!(
            "{what}: a Kyber public key has {KYBER_KEY_LEN} bytes starting with 0x08"
        )));
    }
    Ok(())
}

fn signature(what: &str, signature: &[u8]) -> Result<(), RequestError> {
    if signature.len() != SIGNATURE_LEN {
        return Err(RequestError::bad(format!(
            "{what}: a signature has {SIGNATURE_LEN} bytes"
        )));
    }
    Ok(())
}

fn signed_ec(what: &str, key: &SignedPrekey) -> Result<(), RequestError> {
    ec_key(what, &key.public_key)?;
    signature(what, &key.signature)
}

fn signed_kyber(what: &str, key: &SignedPrekey) -> Result<(), RequestError> {
    kyber_key(what, &key.public_key)?;
    signature(what, &key.signature)
}

fn count(what: &str, n: usize) -> Result<(), RequestError> {
    if n > MAX_PREKEYS_PER_UPLOAD {
        return Err(RequestError::too_large(format!(
            "{what}: at most {MAX_PREKEYS_PER_UPLOAD} per upload"
        )));
    }
    Ok(())
}

fn distinct(what: &str, ids: impl Iterator<Item = u32>) -> Result<(), RequestError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(RequestError::bad(format!(
                "{what}: two keys have the same id"
            )));
        }
    }
    Ok(())
}

/// Checks every key of one upload: counts first (cheap, bounds the work), then shapes.
fn prekeys(
    signed_prekey: Option<&SignedPrekey>,
    last_resort_kyber: Option<&SignedPrekey>,
    one_time_prekeys: &[OneTimePrekey],
    one_time_kyber: &[SignedPrekey],
) -> Result<(), RequestError> {
    count("one-time prekeys", one_time_prekeys.len())?;
    count("one-time Kyber prekeys", one_time_kyber.len())?;
    if let Some(key) = signed_prekey {
        signed_ec("signed prekey", key)?;
    }
    if let Some(key) = last_resort_kyber {
        signed_kyber("last-resort Kyber prekey", key)?;
    }
    for key in one_time_prekeys {
        ec_key("one-time prekey", &key.public_key)?;
    }
    for key in one_time_kyber {
        signed_kyber("one-time Kyber prekey", key)?;
    }
    distinct("one-time prekeys", one_time_prekeys.iter().map(|k| k.id))?;
    distinct(
        "one-time Kyber prekeys",
        one_time_kyber.iter().map(|k| k.id),
    )
}

/// A registration, checked (username, then every key) and converted into what the store takes:
/// the username, the identity key and the first device, whose authentication key is the
/// connection's.
pub(crate) fn register(
    request: Register,
    auth_key: [u8; 32],
) -> Result<(String, Vec<u8>, NewDevice), RequestError> {
    validate_username(&request.username).map_err(|e| RequestError::bad(e.to_string()))?;
    ec_key("identity key", &request.identity_key)?;
    if request.registration_id > MAX_REGISTRATION_ID {
        return Err(RequestError::bad("registration id: at most 0x3fff"));
    }
    let Some(signed_prekey) = request.signed_prekey else {
        return Err(RequestError::bad("registration needs a signed prekey"));
    };
    let Some(last_resort_kyber) = request.last_resort_kyber else {
        return Err(RequestError::bad(
            "registration needs a last-resort Kyber prekey",
        ));
    };
    prekeys(
        Some(&signed_prekey),
        Some(&last_resort_kyber),
        &request.one_time_prekeys,
        &request.one_time_kyber,
    )?;
    let device = NewDevice {
        auth_key,
        registration_id: request.registration_id,
        signed_prekey,
        last_resort_kyber,
        one_time_prekeys: request.one_time_prekeys,
        one_time_kyber: request.one_time_kyber,
    };
    Ok((request.username, request.identity_key, device))
}

/// A prekey upload, checked and converted.
pub(crate) fn upload(request: UploadPrekeys) -> Result<PrekeyUpload, RequestError> {
    prekeys(
        request.signed_prekey.as_ref(),
        request.last_resort_kyber.as_ref(),
        &request.one_time_prekeys,
        &request.one_time_kyber,
    )?;
    Ok(PrekeyUpload {
        signed_prekey: request.signed_prekey,
        last_resort_kyber: request.last_resort_kyber,
        one_time_prekeys: request.one_time_prekeys,
        one_time_kyber: request.one_time_kyber,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec() -> Vec<u8> {
        let mut key = vec![EC_KEY_TYPE];
        key.extend_from_slice(&[1; 32]);
        key
    }

    fn kyber(id: u32) -> SignedPrekey {
        let mut key = vec![KYBER_KEY_TYPE];
        key.extend_from_slice(&[2; KYBER_KEY_LEN - 1]);
        SignedPrekey {
            id,
            public_key: key,
            signature: vec![3; SIGNATURE_LEN],
        }
    }

    fn register_request() -> Register {
        Register {
            username: "alice".into(),
            identity_key: ec(),
            registration_id: 0x3fff,
            signed_prekey: Some(SignedPrekey {
                id: 1,
                public_key: ec(),
                signature: vec![0; 64],
            }),
            last_resort_kyber: Some(kyber(1)),
            one_time_prekeys: vec![OneTimePrekey {
                id: 1,
                public_key: ec(),
            }],
            one_time_kyber: vec![kyber(2)],
        }
    }

    fn is_bad(result: Result<impl Sized, RequestError>) -> bool {
        matches!(result, Err(RequestError::BadRequest(_)))
    }

    #[test]
    fn accepts_well_formed_keys() {
        assert!(register(register_request(), [0; 32]).is_ok());
    }

    #[test]
    fn refuses_each_malformed_key() {
        let mut r = register_request();
        r.username = "Alice".into();
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.identity_key[0] = 0x06;
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.identity_key.pop();
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.registration_id = 0x4000;
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.signed_prekey = None;
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.last_resort_kyber.as_mut().unwrap().public_key.push(0);
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.signed_prekey.as_mut().unwrap().signature.pop();
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.one_time_prekeys[0].public_key = vec![EC_KEY_TYPE];
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.one_time_kyber[0].public_key[0] = EC_KEY_TYPE;
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.one_time_prekeys.push(OneTimePrekey {
            id: 1,
            public_key: ec(),
        });
        assert!(is_bad(register(r, [0; 32])));
        let mut r = register_request();
        r.one_time_kyber.push(kyber(2));
        assert!(is_bad(register(r, [0; 32])));
    }

    #[test]
    fn refuses_too_many_keys_as_too_large() {
        let upload_request = UploadPrekeys {
            one_time_prekeys: (0..=MAX_PREKEYS_PER_UPLOAD as u32)
                .map(|id| OneTimePrekey {
                    id,
                    public_key: ec(),
                })
                .collect(),
            ..Default::default()
        };
        assert!(matches!(
            upload(upload_request),
            Err(RequestError::TooLarge(_))
        ));
        assert!(upload(UploadPrekeys::default()).is_ok());
    }
}
