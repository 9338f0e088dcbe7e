//! The envelope of one credential version, without AWS: the stream's secret (the JSON
//! [`super::super::SecretsManagerCredentials::secret_string`] writes) sealed with AES-256-GCM
//! under a 256-bit data key, next to that data key as KMS encrypted it.
//!
//! AES-GCM takes a 96-bit nonce, here random from the OS for every seal: one data key seals
//! exactly one credential version, so a nonce is never used twice under a key. The
//! associated data binds the ciphertext to the stream and version it was sealed for (the same
//! names as the KMS encryption context): a ciphertext copied to another stream's record, or
//! altered by one bit, does not open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

/// Written into the associated data, so that a later format can never open as this one.
pub const FORMAT: u8 = 1;
pub const NONCE_LEN: usize = 12;
/// AES-256: KMS `GenerateDataKey` with `KeySpec=AES_256`.
pub const DATA_KEY_LEN: usize = 32;

/// What a sealed credential is bound to; also the KMS encryption context of its data key.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub project_id: &'a str,
    pub secret_id: &'a str,
    pub version_id: &'a str,
}

/// The fixed pair of every encryption context: the IAM policy lets the functions use the key
/// for this purpose only.
pub const PURPOSE: (&str, &str) = ("purpose", "event-log-streaming-credential");

impl Context<'_> {
    /// The KMS encryption context.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            PURPOSE,
            ("project_id", self.project_id),
            ("secret_id", self.secret_id),
            ("version_id", self.version_id),
        ]
    }

    /// The AES-GCM associated data: the format, then each value with its length in front,
    /// so that no two contexts give the same bytes.
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = vec![FORMAT];
        for (_, value) in self.pairs() {
            aad.extend_from_slice(&(value.len() as u32).to_be_bytes());
            aad.extend_from_slice(value.as_bytes());
        }
        aad
    }
}

/// A plaintext data key; wiped when dropped, never printed.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// The key KMS returned in plaintext; the bytes given are wiped.
    pub fn from_plaintext(mut bytes: Vec<u8>) -> Result<Self, SealError> {
        let key = <[u8; DATA_KEY_LEN]>::try_from(bytes.as_slice())
            .map(|key| Self(Zeroizing::new(key)))
            .map_err(|_| SealError::KeyLength);
        zeroize::Zeroize::zeroize(&mut bytes);
        key
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_slice()))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(***)")
    }
}

/// One credential version as the table keeps it. Nothing in it is secret without the KMS
/// key, but `Debug` prints sizes only all the same.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The data key as KMS encrypted it (`CiphertextBlob`).
    pub encrypted_key: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    /// The AES-GCM ciphertext, its 16-byte tag at the end.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("encrypted_key_len", &self.encrypted_key.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Why a credential could not be sealed or opened. No variant carries a byte of a key, a
/// ciphertext or a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the credential does not open: altered, or sealed for another stream or version")]
    Refused,
    #[error("the data key is not {DATA_KEY_LEN} bytes long")]
    KeyLength,
    #[error("the operating system's random number generator failed")]
    Random,
}

/// Seals `plaintext` under `key` (whose KMS-encrypted form is `encrypted_key`) for `context`.
pub fn seal(
    key: &DataKey,
    encrypted_key: Vec<u8>,
    context: &Context<'_>,
    plaintext: &[u8],
) -> Result<Sealed, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let aad = context.associated_data();
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        // Only for a message past AES-GCM's 64 GiB limit.
        .map_err(|_| SealError::Refused)?;
    Ok(Sealed {
        encrypted_key,
        nonce,
        ciphertext,
    })
}

/// The plaintext of `sealed`, if it opens under `key` for `context`: wiped when dropped.
pub fn open(
    key: &DataKey,
    sealed: &Sealed,
    context: &Context<'_>,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let aad = context.associated_data();
    key.cipher()
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAINTEXT: &[u8] = br#"{"credential":"glc_very-secret-token-4e1f"}"#;

    fn key(byte: u8) -> DataKey {
        DataKey::from_plaintext(vec![byte; DATA_KEY_LEN]).unwrap()
    }

    fn context<'a>(project_id: &'a str, version_id: &'a str) -> Context<'a> {
        Context {
            project_id,
            secret_id: "envelope:p/s",
            version_id,
        }
    }

    #[test]
    fn a_sealed_credential_opens_under_its_key_and_context() {
        let sealed = seal(
            &key(7),
            b"kms-blob".to_vec(),
            &context("p", "v1"),
            PLAINTEXT,
        )
        .unwrap();
        assert_eq!(sealed.encrypted_key, b"kms-blob");
        assert_eq!(sealed.ciphertext.len(), PLAINTEXT.len() + 16);
        assert!(
            !sealed
                .ciphertext
                .windows(8)
                .any(|w| PLAINTEXT.windows(8).any(|p| p == w)),
            "nothing of the plaintext shows in the ciphertext"
        );
        let opened = open(&key(7), &sealed, &context("p", "v1")).unwrap();
        assert_eq!(opened.as_slice(), PLAINTEXT);
    }

    #[test]
    fn two_seals_of_one_credential_differ() {
        let first = seal(&key(7), vec![], &context("p", "v1"), PLAINTEXT).unwrap();
        let second = seal(&key(7), vec![], &context("p", "v1"), PLAINTEXT).unwrap();
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn an_altered_ciphertext_nonce_or_tag_is_refused() {
        let sealed = seal(&key(7), vec![], &context("p", "v1"), PLAINTEXT).unwrap();
        let last = sealed.ciphertext.len() - 1;
        let mut altered = Vec::new();
        for index in [0, PLAINTEXT.len() / 2, last] {
            let mut copy = sealed.clone();
            copy.ciphertext[index] ^= 1;
            altered.push(copy);
        }
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 0x80;
        altered.push(nonce);
        let mut truncated = sealed.clone();
        truncated.ciphertext.truncate(last);
        altered.push(truncated);
        for copy in altered {
            assert!(matches!(
                open(&key(7), &copy, &context("p", "v1")),
                Err(SealError::Refused)
            ));
        }
    }

    #[test]
    fn another_context_or_key_is_refused() {
        let sealed = seal(&key(7), vec![], &context("p", "v1"), PLAINTEXT).unwrap();
        for other in [
            context("q", "v1"),
            context("p", "v2"),
            Context {
                secret_id: "envelope:p/other",
                ..context("p", "v1")
            },
        ] {
            assert!(matches!(
                open(&key(7), &sealed, &other),
                Err(SealError::Refused)
            ));
        }
        assert!(open(&key(8), &sealed, &context("p", "v1")).is_err());
    }

    #[test]
    fn contexts_that_join_alike_are_still_different() {
        let a = Context {
            project_id: "ab",
            secret_id: "c",
            version_id: "d",
        };
        let b = Context {
            project_id: "a",
            secret_id: "bc",
            version_id: "d",
        };
        assert_ne!(a.associated_data(), b.associated_data());
    }

    #[test]
    fn keys_are_256_bits_and_never_printed() {
        assert!(matches!(
            DataKey::from_plaintext(vec![1; 16]),
            Err(SealError::KeyLength)
        ));
        let key = key(0x41);
        assert_eq!(format!("{key:?}"), "DataKey(***)");
        let sealed = seal(&key, b"blob".to_vec(), &context("p", "v1"), PLAINTEXT).unwrap();
        let printed = format!("{sealed:?}");
        assert!(
            !printed.contains("blob") && !printed.contains("98"),
            "{printed}"
        );
        let refused = open(&key, &sealed, &context("q", "v1")).unwrap_err();
        assert!(!format!("{refused} {refused:?}").contains("glc_"));
    }
}
