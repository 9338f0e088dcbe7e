//! A project's redaction key: the HMAC-SHA256 key under which `HASH` redaction hashes values.
//!
//! Each project has a key of its own, [`REDACTION_KEY_LEN`] bytes from the operating system's
//! random number generator, so a value hashes the same within a project (its records can still
//! be joined on it) and differently in another project (hashes cannot be compared across
//! customers, nor looked up in a table built for all of them). The key is kept as a secret
//! (hex text in a [`Secret`]); `Debug` and `Display` print `***` and nothing serializes it.
//!
//! A hash is `hmac-sha256:` followed by the 64 lowercase hex digits of
//! HMAC-SHA256(key, bytes) (RFC 2104, RFC 4231).

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::domain::ValidationError;
use crate::secret::Secret;

/// A full SHA-256 block's worth of key: HMAC's security is that of the key up to the hash's
/// output size (RFC 2104 §3).
pub const REDACTION_KEY_LEN: usize = 32;
/// Tells a hashed value from the customer's own data, and says how it was made.
pub const HASH_PREFIX: &str = "hmac-sha256:";

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Clone)]
pub struct RedactionKey([u8; REDACTION_KEY_LEN]);

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("could not generate a redaction key: {0}")]
pub struct KeyGenerationError(getrandom::Error);

impl RedactionKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyGenerationError> {
        let mut bytes = [0u8; REDACTION_KEY_LEN];
        getrandom::fill(&mut bytes).map_err(KeyGenerationError)?;
        Ok(Self(bytes))
    }

    /// The key as it is stored: hex text, only ever inside a [`Secret`].
    pub fn to_secret(&self) -> Secret {
        Secret::new(hex(&self.0))
    }

    /// A key stored by [`Self::to_secret`]. The error never quotes the secret.
    pub fn from_secret(secret: &Secret) -> Result<Self, ValidationError> {
        let text = secret.expose().as_bytes();
        let invalid = || {
            ValidationError::new(
                "redaction_key",
                format!("must be {} lowercase hex digits", REDACTION_KEY_LEN * 2),
            )
        };
        if text.len() != REDACTION_KEY_LEN * 2 {
            return Err(invalid());
        }
        let mut bytes = [0u8; REDACTION_KEY_LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let high = hex_digit(pair[0]).ok_or_else(invalid)?;
            let low = hex_digit(pair[1]).ok_or_else(invalid)?;
            *byte = high << 4 | low;
        }
        Ok(Self(bytes))
    }

    /// A hasher keyed once, to hash many values (the key's two HMAC blocks are not hashed
    /// again for each value).
    pub(super) fn hasher(&self) -> FieldHasher {
        FieldHasher(hmac_sha256(&self.0))
    }
}

fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (a long one is hashed first); this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

impl fmt::Debug for RedactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedactionKey(***)")
    }
}

impl fmt::Display for RedactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// HMAC-SHA256 under a project's key, ready to hash values.
#[derive(Clone)]
pub(super) struct FieldHasher(HmacSha256);

impl FieldHasher {
    /// `hmac-sha256:<64 hex digits>` of `bytes`, as a JSON string (quotes included; hex needs
    /// no escaping).
    pub(super) fn json_hash(&self, bytes: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + 2 * digest.len() + 2);
        out.push('"');
        out.push_str(HASH_PREFIX);
        out.push_str(&hex(&digest));
        out.push('"');
        out
    }
}

impl fmt::Debug for FieldHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldHasher(***)")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> RedactionKey {
        RedactionKey([byte; REDACTION_KEY_LEN])
    }

    #[test]
    fn hmac_sha256_matches_the_rfc_4231_test_vectors() {
        // RFC 4231 §4.2 (test case 1) and §4.3 (test case 2).
        let case_1 = FieldHasher(hmac_sha256(&[0x0b; 20])).json_hash(b"Hi There");
        assert_eq!(
            case_1,
            "\"hmac-sha256:b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7\""
        );
        let case_2 = FieldHasher(hmac_sha256(b"Jefe")).json_hash(b"what do ya want for nothing?");
        assert_eq!(
            case_2,
            "\"hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\""
        );
    }

    #[test]
    fn a_value_hashes_the_same_under_one_key_and_differently_under_another() {
        let ours = key(1).hasher();
        let theirs = key(2).hasher();
        let value = b"ada@example.com";
        assert_eq!(ours.json_hash(value), key(1).hasher().json_hash(value));
        assert_ne!(ours.json_hash(value), theirs.json_hash(value));
        assert_ne!(ours.json_hash(value), ours.json_hash(b"bob@example.com"));
    }

    #[test]
    fn generated_keys_differ_and_survive_the_store() {
        let first = RedactionKey::generate().unwrap();
        let second = RedactionKey::generate().unwrap();
        assert_ne!(first.to_secret(), second.to_secret());
        let stored = first.to_secret();
        assert_eq!(stored.expose().len(), 64);
        let again = RedactionKey::from_secret(&stored).unwrap();
        assert_eq!(
            again.hasher().json_hash(b"v"),
            first.hasher().json_hash(b"v")
        );
    }

    #[test]
    fn a_stored_key_that_is_not_64_lowercase_hex_digits_is_refused_without_quoting_it() {
        let good = key(0xab).to_secret().expose().to_owned();
        for bad in [
            good[..63].to_owned(),
            format!("{good}0"),
            good.to_uppercase(),
            format!("{}g", &good[..63]),
            String::new(),
        ] {
            let err = RedactionKey::from_secret(&Secret::new(bad.clone())).unwrap_err();
            assert!(bad.is_empty() || !err.to_string().contains(&bad));
        }
    }

    #[test]
    fn debug_and_display_print_no_key_material() {
        let key = key(0xab);
        let hex = key.to_secret().expose().to_owned();
        for printed in [
            format!("{key:?}"),
            format!("{key}"),
            format!("{:?}", key.hasher()),
            format!("{:?}", Some(&key)),
        ] {
            assert!(!printed.contains("abab"), "{printed}");
            assert!(!printed.contains(&hex));
            assert!(printed.contains("***"));
        }
    }
}
