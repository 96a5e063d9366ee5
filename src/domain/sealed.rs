//! Opaque carriers for personal data and biometric references.
//!
//! The domain never sees personal data in the clear: names, document numbers
//! and permit numbers arrive already sealed by the `pii` module and leave the
//! same way. The domain only checks that a sealed value is present and within
//! its size limit.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Most bytes a sealed value may hold (an identity record with documents
/// fits in well under this; anything larger is a caller bug).
pub const SEALED_BYTES_MAX: usize = 16 * 1024;

/// Personal data sealed by another module: opaque bytes the domain stores and
/// returns but never interprets. Erasing a person destroys the key, not these
/// bytes, so the log stays verifiable.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Sealed(#[serde(with = "hex_bytes")] pub Vec<u8>);

impl Sealed {
    /// The opaque bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no bytes are held (never valid in a command).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Sealed {
    /// Shows the size only: ciphertext in logs and test output is noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// What a field of a command or event is, for the generated
/// [`Event::sealed`](super::Event::sealed) and
/// [`Command::carries_personal_data`](super::Command::carries_personal_data):
/// sealed personal data is exactly a field of type [`Sealed`], so a new
/// command or event with one is recognised as personal without being listed.
pub(crate) trait Field {
    /// The field's sealed personal data, if it holds any.
    fn as_sealed(&self) -> Option<&Sealed> {
        None
    }
}

impl Field for Sealed {
    fn as_sealed(&self) -> Option<&Sealed> {
        Some(self)
    }
}

/// The field types that hold no personal data.
macro_rules! plain_fields {
    ($($t:ty),* $(,)?) => {$(impl Field for $t {})*};
}
plain_fields!(
    u8,
    u16,
    u32,
    bool,
    String,
    BiometricRef,
    super::Date,
    Option<super::Date>,
    super::CountryCode,
    Option<super::CountryCode>,
    super::ChannelCode,
    super::Department,
    super::Municipality,
    Vec<super::DocumentType>,
    super::Sex,
    super::EligibilityBasis,
    super::Sector,
    Option<super::Sector>,
    super::DenialReason,
    super::PermitType,
    super::DuplicateCause,
    super::CancellationGround,
    super::CertificationRoute,
    super::ExitKind,
    super::SubjectRequestKind,
    super::LinkRole,
    super::LinkEvidence,
    super::LinkEndReason,
);

/// A 32-byte reference to a biometric enrolment (a digest or handle in the
/// biometric system), never a template.
pub type BiometricRef = [u8; 32];

/// Serde for byte strings: lowercase hex in human-readable formats (JSON),
/// raw bytes in binary ones.
pub(crate) mod hex_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&crate::hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hex string or a byte string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
                crate::hex::decode(text).ok_or_else(|| E::custom("invalid hex"))
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    if out.len() >= SEALED_BYTES_MAX {
                        return Err(de::Error::custom("byte string too long"));
                    }
                    out.push(b);
                }
                Ok(out)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(BytesVisitor)
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

/// Serde for [`BiometricRef`]: hex or bytes, exactly 32 of them.
pub(crate) mod hex_32 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        hex_bytes::serialize(bytes, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let bytes = hex_bytes::deserialize(deserializer)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| de::Error::custom("expected exactly 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_serializes_as_hex_and_hides_bytes_in_debug() {
        let sealed = Sealed(vec![0x00, 0xab, 0xff]);
        assert_eq!(serde_json::to_string(&sealed).unwrap(), "\"00abff\"");
        assert_eq!(serde_json::from_str::<Sealed>("\"00ABff\"").unwrap(), sealed);
        assert!(serde_json::from_str::<Sealed>("\"0g\"").is_err());
        assert!(serde_json::from_str::<Sealed>("\"abc\"").is_err());
        assert_eq!(format!("{sealed:?}"), "Sealed(3 bytes)");
    }
}
