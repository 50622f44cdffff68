//! Who a message is for: service ids (ACI / PNI) and device ids.
//!
//! A [`ServiceId`] travels in sealed sender v2 in its 17-byte fixed-width binary form:
//! a type byte (`0x00` ACI, `0x01` PNI) followed by the 16 UUID bytes. Its string form is the
//! lowercase hyphenated UUID for an ACI and `PNI:` + UUID for a PNI, as libsignal prints it.

use core::fmt;

use crate::error::DecodeError;

/// Type byte of an ACI in the fixed-width binary form.
const ACI_TYPE: u8 = 0x00;
/// Type byte of a PNI in the fixed-width binary form.
const PNI_TYPE: u8 = 0x01;
/// Prefix of a PNI's string form.
const PNI_PREFIX: &str = "PNI:";

/// An account's service id: its ACI (account identity) or its PNI (phone number identity).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceId {
    /// An account identifier (the account's main UUID).
    Aci([u8; 16]),
    /// A phone number identifier.
    Pni([u8; 16]),
}

impl ServiceId {
    /// Length of the fixed-width binary form: type byte and 16 UUID bytes.
    pub const FIXED_WIDTH_LEN: usize = 17;

    /// The 16 UUID bytes, whatever the kind.
    pub fn uuid_bytes(&self) -> &[u8; 16] {
        match self {
            Self::Aci(uuid) | Self::Pni(uuid) => uuid,
        }
    }

    /// The 17-byte fixed-width binary form: `0x00 || uuid` (ACI) or `0x01 || uuid` (PNI).
    pub fn to_fixed_width_binary(&self) -> [u8; Self::FIXED_WIDTH_LEN] {
        let mut out = [0u8; Self::FIXED_WIDTH_LEN];
        let (kind, uuid) = match self {
            Self::Aci(uuid) => (ACI_TYPE, uuid),
            Self::Pni(uuid) => (PNI_TYPE, uuid),
        };
        out[0] = kind;
        out[1..].copy_from_slice(uuid);
        out
    }

    /// The service id string: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` for an ACI,
    /// `PNI:xxxxxxxx-…` for a PNI.
    pub fn service_id_string(&self) -> String {
        self.to_string()
    }

    /// Parses a service id string (see [`ServiceId::service_id_string`]). UUID hex digits may
    /// be in either case; `None` if the string is not of that form.
    pub fn parse_service_id_string(text: &str) -> Option<Self> {
        match text.strip_prefix(PNI_PREFIX) {
            Some(uuid) => parse_uuid(uuid).map(Self::Pni),
            None => parse_uuid(text).map(Self::Aci),
        }
    }
}

impl TryFrom<&[u8]> for ServiceId {
    type Error = DecodeError;

    /// Parses the 17-byte fixed-width binary form.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let fixed = <&[u8; Self::FIXED_WIDTH_LEN]>::try_from(bytes).map_err(|_| {
            DecodeError::BadLength {
                what: "service id",
                expected: Self::FIXED_WIDTH_LEN,
                actual: bytes.len(),
            }
        })?;
        let (&kind, uuid) = fixed
            .split_first()
            .ok_or(DecodeError::TooShort("service id"))?;
        let uuid = <[u8; 16]>::try_from(uuid).map_err(|_| DecodeError::TooShort("service id"))?;
        match kind {
            ACI_TYPE => Ok(Self::Aci(uuid)),
            PNI_TYPE => Ok(Self::Pni(uuid)),
            _ => Err(DecodeError::InvalidField("service id type")),
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Self::Pni(_) = self {
            f.write_str(PNI_PREFIX)?;
        }
        for (i, b) in self.uuid_bytes().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceId({self})")
    }
}

/// Parses a hyphenated UUID (`8-4-4-4-12` hex digits).
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = bytes
        .iter()
        .enumerate()
        .filter(|&(i, _)| !matches!(i, 8 | 13 | 18 | 23));
    if [8usize, 13, 18, 23]
        .iter()
        .any(|&i| bytes.get(i) != Some(&b'-'))
    {
        return None;
    }
    for byte in out.iter_mut() {
        let (_, &hi) = digits.next()?;
        let (_, &lo) = digits.next()?;
        *byte = (hex_digit(hi)? << 4) | hex_digit(lo)?;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A device of an account. libsignal carries it as a `u32` in certificates; multi-recipient
/// sealed sender only accepts `1..=`[`MAX_VALID_DEVICE_ID`](crate::MAX_VALID_DEVICE_ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(u32);

impl From<u32> for DeviceId {
    fn from(id: u32) -> Self {
        Self(id)
    }
}

impl From<DeviceId> for u32 {
    fn from(id: DeviceId) -> u32 {
        id.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [
        0x79, 0x6a, 0xbe, 0xdb, 0xca, 0x4e, 0x4f, 0x18, 0x88, 0x03, 0x1f, 0xde, 0x5b, 0x92, 0x1f,
        0x9f,
    ];

    #[test]
    fn string_forms_roundtrip() {
        let aci = ServiceId::Aci(UUID);
        assert_eq!(
            aci.service_id_string(),
            "796abedb-ca4e-4f18-8803-1fde5b921f9f"
        );
        assert_eq!(
            ServiceId::parse_service_id_string("796ABEDB-ca4e-4f18-8803-1fde5b921f9f"),
            Some(aci)
        );
        let pni = ServiceId::Pni(UUID);
        assert_eq!(
            pni.service_id_string(),
            "PNI:796abedb-ca4e-4f18-8803-1fde5b921f9f"
        );
        assert_eq!(
            ServiceId::parse_service_id_string(&pni.service_id_string()),
            Some(pni)
        );
        for bad in [
            "",
            "796abedb-ca4e-4f18-8803-1fde5b921f9",
            "796abedb-ca4e-4f18-8803-1fde5b921f9f0",
            "796abedbxca4e-4f18-8803-1fde5b921f9f",
            "796abedb-ca4e-4f18-8803-1fde5b921f9g",
            "ACI:796abedb-ca4e-4f18-8803-1fde5b921f9f",
            "796abedb-ca4e-4f18-8803-1fde5b921f\u{e9}",
        ] {
            assert_eq!(ServiceId::parse_service_id_string(bad), None, "{bad}");
        }
    }

    #[test]
    fn fixed_width_roundtrip_and_rejections() {
        for id in [ServiceId::Aci(UUID), ServiceId::Pni(UUID)] {
            let bytes = id.to_fixed_width_binary();
            assert_eq!(ServiceId::try_from(&bytes[..]), Ok(id));
        }
        assert_eq!(ServiceId::Aci(UUID).to_fixed_width_binary()[0], 0);
        assert_eq!(ServiceId::Pni(UUID).to_fixed_width_binary()[0], 1);
        let mut bytes = ServiceId::Aci(UUID).to_fixed_width_binary();
        bytes[0] = 2;
        assert!(ServiceId::try_from(&bytes[..]).is_err());
        assert!(ServiceId::try_from(&bytes[..16]).is_err());
        assert!(ServiceId::try_from(&[0u8; 18][..]).is_err());
    }
}
