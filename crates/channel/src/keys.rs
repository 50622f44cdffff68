//! Static Curve25519 keys of the Noise channel.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::ChannelError;

/// A static public key: the server's identity in the channel, or a device's authentication key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as the server prints it and invite links carry it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads the hex form.
    pub fn from_hex(hex: &str) -> Result<Self, ChannelError> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(ChannelError::KeyLength {
                actual: hex.len() / 2,
            });
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| ChannelError::Malformed("key is not hex"))?;
        }
        Ok(Self(out))
    }

    /// Compares in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl TryFrom<&[u8]> for PublicKey {
    type Error = ChannelError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| ChannelError::KeyLength {
            actual: bytes.len(),
        })?;
        Ok(Self(bytes))
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A static key pair. The private half is wiped when dropped and never shown.
pub struct StaticKeypair {
    private: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl StaticKeypair {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Self {
        let keypair = crate::handshake::builder(crate::handshake::Pattern::Ik)
            .generate_keypair()
            .expect("the default resolver generates X25519 key pairs");
        let mut private = Zeroizing::new([0u8; 32]);
        private.copy_from_slice(&keypair.private);
        let mut raw = keypair.private;
        zeroize::Zeroize::zeroize(&mut raw);
        Self::from_private(private)
    }

    /// The key pair with this private key (as stored by [`StaticKeypair::private_bytes`]).
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self, ChannelError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| ChannelError::KeyLength {
            actual: bytes.len(),
        })?;
        Ok(Self::from_private(Zeroizing::new(bytes)))
    }

    fn from_private(private: Zeroizing<[u8; 32]>) -> Self {
        let public = x25519_public(&private);
        Self { private, public }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The private half, for storing the key pair (in a file only its owner can read).
    pub fn private_bytes(&self) -> &[u8; 32] {
        &self.private
    }
}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// X25519 base-point multiplication through snow's own DH, so that the public key is exactly
/// what the handshake will use.
fn x25519_public(private: &[u8; 32]) -> PublicKey {
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut dh = DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("the default resolver has X25519");
    dh.set(private);
    let mut public = [0u8; 32];
    public.copy_from_slice(dh.pubkey());
    PublicKey(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_bytes_round_trip() {
        let pair = StaticKeypair::generate();
        let again = StaticKeypair::from_private_bytes(pair.private_bytes()).unwrap();
        assert_eq!(pair.public(), again.public());
        assert!(!format!("{pair:?}").contains(&format!("{:?}", pair.private_bytes())));
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let key = StaticKeypair::generate().public();
        assert_eq!(PublicKey::from_hex(&key.to_hex()), Ok(key));
        assert!(PublicKey::from_hex("abcd").is_err());
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(PublicKey::from_hex(&"é".repeat(32)).is_err());
        assert!(PublicKey::try_from(&[0u8; 31][..]).is_err());
    }
}
