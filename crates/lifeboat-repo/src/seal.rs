//! Sealed side objects: compressed with zstd, then encrypted and authenticated with
//! XChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the repository's master key —
//! never the master key itself. The object's name is the associated data, so a sealed
//! object copied under another name (a WAL segment renamed) does not open.
//!
//! Layout: `LBS1` | 24-byte random nonce | ciphertext with its 16-byte tag.

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use hkdf::Hkdf;
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"LBS1";
const NONCE: usize = 24;
/// zstd level 1: WAL is archived while the server waits; level 3 costs twice the time for
/// a few percent.
const LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("`{0}` is not a sealed lifeboat object")]
    NotSealed(String),
    #[error("`{0}` does not open: wrong repository key, or the object is damaged")]
    Damaged(String),
    #[error("`{name}`: {message}")]
    Codec { name: String, message: String },
}

/// Whether `bytes` look like a sealed object (its magic); [`SideKey::open`] decides.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The key for side objects of one repository.
#[derive(Clone)]
pub struct SideKey(XChaCha20Poly1305);

impl std::fmt::Debug for SideKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SideKey([redacted])")
    }
}

impl SideKey {
    /// Derive from the master key material (the repository key's encryption and MAC keys).
    pub fn derive(master: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"lifeboat side area v1"), master);
        let mut okm = [0u8; 32];
        hk.expand(b"xchacha20poly1305 side objects", &mut okm)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self(XChaCha20Poly1305::new(&okm.into()))
    }

    /// Compress and seal `plain` as the object `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let packed = zstd::bulk::compress(plain, LEVEL).map_err(|e| SealError::Codec {
            name: name.into(),
            message: e.to_string(),
        })?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: &packed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::Codec {
                name: name.into(),
                message: "encryption failed".into(),
            })?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Open a sealed object `name`: authenticate, decrypt, decompress.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < MAGIC.len() + NONCE + 16 || &sealed[..4] != MAGIC {
            return Err(SealError::NotSealed(name.into()));
        }
        let nonce = XNonce::from_slice(&sealed[4..4 + NONCE]);
        let packed = self
            .0
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[4 + NONCE..],
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::Damaged(name.into()))?;
        zstd::stream::decode_all(&packed[..]).map_err(|e| SealError::Codec {
            name: name.into(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_evidence() {
        let key = SideKey::derive(b"master key material");
        let plain: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let sealed = key
            .seal("wal/1/00000001/000000010000000000000001", &plain)
            .unwrap();
        assert!(sealed.len() < plain.len() / 4, "compressed");
        assert_eq!(
            key.open("wal/1/00000001/000000010000000000000001", &sealed)
                .unwrap(),
            plain
        );
        // Another name, another key, a flipped byte: none opens.
        assert!(
            key.open("wal/1/00000001/000000010000000000000002", &sealed)
                .is_err()
        );
        assert!(
            SideKey::derive(b"other")
                .open("wal/1/00000001/000000010000000000000001", &sealed)
                .is_err()
        );
        let mut bad = sealed.clone();
        let n = bad.len() - 20;
        bad[n] ^= 1;
        assert!(matches!(
            key.open("wal/1/00000001/000000010000000000000001", &bad),
            Err(SealError::Damaged(_))
        ));
        assert!(matches!(
            key.open("x", b"plain text, not sealed"),
            Err(SealError::NotSealed(_))
        ));
    }

    #[test]
    fn nonces_differ() {
        let key = SideKey::derive(b"k");
        assert_ne!(
            key.seal("a", b"same").unwrap(),
            key.seal("a", b"same").unwrap()
        );
    }
}
