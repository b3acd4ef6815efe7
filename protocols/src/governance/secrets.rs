//! Per-tenant secrets, sealed with AES-256-GCM before they reach the store.
//! The nonce is random per write and the additional data binds a ciphertext
//! to its tenant and name, so a row copied under another tenant or name does
//! not open. Plaintext never leaves this module except to its owner's GET.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Seals and opens secret values.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("secret does not open: {0}")]
pub struct OpenError(&'static str);

impl SecretBox {
    /// A box over a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes any 32-byte key"));
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// Parses a base64 32-byte key (`secrets_key`, `AGW_SECRETS_KEY`).
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|e| format!("secrets key is not base64: {e}"))?;
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|v: Vec<u8>| format!("secrets key must be 32 bytes, got {}", v.len()))?;
        Ok(Self::new(&key))
    }

    /// A fresh random key, base64 (generated on first start when none is configured).
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        // The OS RNG failing is not recoverable.
        SystemRandom::new()
            .fill(&mut key)
            .unwrap_or_else(|_| panic!("OS random number generator failed"));
        STANDARD.encode(key)
    }

    fn aad(tenant: &str, name: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(tenant.len() + name.len() + 1);
        aad.extend_from_slice(tenant.as_bytes());
        aad.push(0);
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Seals `plaintext` for `tenant`'s secret `name`: base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, tenant: &str, name: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .unwrap_or_else(|_| panic!("OS random number generator failed"));
        let mut buf = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(tenant, name)),
                &mut buf,
            )
            .unwrap_or_else(|_| unreachable!("sealing only fails for oversize inputs"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        STANDARD.encode(out)
    }

    /// Opens what [`SecretBox::seal`] produced for the same tenant and name.
    pub fn open(&self, tenant: &str, name: &str, sealed: &str) -> Result<String, OpenError> {
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| OpenError("not base64"))?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError("too short"));
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError("bad nonce"))?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(tenant, name)), &mut buf)
            .map_err(|_| OpenError("wrong key, tenant or name, or tampered"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_tenant_name_and_key() {
        let b = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        let sealed = b.seal("acme", "db", "hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            b.seal("acme", "db", "hunter2"),
            "fresh nonce per seal"
        );
        assert_eq!(b.open("acme", "db", &sealed).unwrap(), "hunter2");
        assert!(b.open("other", "db", &sealed).is_err());
        assert!(b.open("acme", "db2", &sealed).is_err());
        let other = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        assert!(other.open("acme", "db", &sealed).is_err());
        let mut raw = STANDARD.decode(&sealed).unwrap();
        raw[NONCE_LEN] ^= 1;
        assert!(b.open("acme", "db", &STANDARD.encode(raw)).is_err());
    }

    #[test]
    fn keys_must_be_32_base64_bytes() {
        assert!(SecretBox::from_base64("not base64!").is_err());
        assert!(SecretBox::from_base64(&STANDARD.encode([0u8; 16])).is_err());
    }
}
