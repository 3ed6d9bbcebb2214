//! Encryption of secrets at rest: XChaCha20-Poly1305 with a random 192-bit nonce per value.
//! Every sealed value is bound (as associated data) to what owns it — a linker id, a saga id,
//! a paging scope — so a ciphertext moved to another row does not open.
//!
//! Layout: `[version = 1][24-byte nonce][ciphertext + tag]`. The version byte leaves room for
//! key rotation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use tether_model::linker::Sealed;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Seals and opens secrets with one key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

/// A sealed value failed to open: wrong key, wrong owner, or tampering.
#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (wrong key, wrong owner or corrupted)")]
pub struct OpenError;

impl SecretBox {
    /// A box from a base64-encoded 32-byte key (as in configuration).
    pub fn from_base64(key: &SecretString) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| "is not valid base64".to_string())?;
        if bytes.len() != 32 {
            return Err(format!("must decode to 32 bytes, not {}", bytes.len()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| "has the wrong length".to_string())?;
        Ok(Self { cipher })
    }

    /// A fresh random key, base64-encoded (what `tether dev` writes into its data directory).
    pub fn generate_key() -> SecretString {
        SecretString::from(STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng)))
    }

    /// Encrypts `plaintext` for `owner`.
    pub fn seal(&self, plaintext: &[u8], owner: &[u8]) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: owner,
                },
            )
            .expect("encryption with a valid key and nonce cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Sealed(out)
    }

    /// Decrypts a value sealed for `owner`.
    pub fn open(&self, sealed: &Sealed, owner: &[u8]) -> Result<Vec<u8>, OpenError> {
        let bytes = &sealed.0;
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != VERSION {
            return Err(OpenError);
        }
        let nonce = XNonce::from_slice(&bytes[1..=NONCE_LEN]);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &bytes[1 + NONCE_LEN..],
                    aad: owner,
                },
            )
            .map_err(|_| OpenError)
    }

    /// Seals a string secret.
    pub fn seal_str(&self, secret: &str, owner: &[u8]) -> Sealed {
        self.seal(secret.as_bytes(), owner)
    }

    /// Opens a string secret.
    pub fn open_str(&self, sealed: &Sealed, owner: &[u8]) -> Result<SecretString, OpenError> {
        let bytes = self.open(sealed, owner)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::from_base64(&SecretBox::generate_key()).unwrap()
    }

    #[test]
    fn seals_and_opens_for_the_same_owner_only() {
        let b = boxed();
        let sealed = b.seal_str("hunter2", b"linker-1");
        assert!(!sealed.0.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            b.open_str(&sealed, b"linker-1").unwrap().expose_secret(),
            "hunter2"
        );
        assert!(b.open(&sealed, b"linker-2").is_err());
        assert!(boxed().open(&sealed, b"linker-1").is_err(), "another key");
        let mut tampered = sealed.clone();
        *tampered.0.last_mut().unwrap() ^= 1;
        assert!(b.open(&tampered, b"linker-1").is_err());
        assert_ne!(
            b.seal_str("hunter2", b"linker-1"),
            sealed,
            "nonces are random"
        );
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(SecretBox::from_base64(&SecretString::from("not base64!")).is_err());
        assert!(SecretBox::from_base64(&SecretString::from(STANDARD.encode([0u8; 16]))).is_err());
    }
}
