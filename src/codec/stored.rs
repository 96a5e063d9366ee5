//! How each domain field type is kept in a stored event's protobuf field,
//! and checked when read back: the one place the codec maps a value, used
//! by the encode and decode that [`super`] generates from the event table.
//!
//! A field that fails names itself (by its proto name) in
//! [`CodecError::InvalidField`]. Codes read back are checked for form only
//! where a list may change (countries, municipalities), so records accepted
//! under an older list still decode.

use super::{CodecError, Fields};
use crate::domain::types::CodeEnum;
use crate::domain::{
    BiometricRef, ChannelCode, CountryCode, Date, Department, DocumentType, Municipality, Sealed, Sector,
};

/// A domain field type kept in a protobuf field of type `P`.
pub(super) trait Stored<P>: Sized {
    /// The stored value.
    fn store(&self) -> P;
    /// The domain value of a stored one, or the error naming `field`.
    fn load(f: Fields, field: &'static str, stored: P) -> Result<Self, CodecError>;
}

/// Values kept as they are (strings are codes or ids; no check).
macro_rules! stored_as_is {
    ($($t:ty),*) => {$(
        impl Stored<$t> for $t {
            fn store(&self) -> $t {
                self.clone()
            }
            fn load(_: Fields, _: &'static str, stored: $t) -> Result<$t, CodecError> {
                Ok(stored)
            }
        }
    )*};
}
stored_as_is!(u32, bool, String);

/// Closed vocabularies: their stable string codes (`as_str`, `parse`).
impl<T: CodeEnum> Stored<String> for T {
    fn store(&self) -> String {
        self.as_str().to_owned()
    }
    fn load(f: Fields, field: &'static str, stored: String) -> Result<T, CodecError> {
        f.code(field, &stored, T::parse)
    }
}

/// A channel: its catalog code (`as_str`, `parse`).
impl Stored<String> for ChannelCode {
    fn store(&self) -> String {
        self.as_str().to_owned()
    }
    fn load(f: Fields, field: &'static str, stored: String) -> Result<ChannelCode, CodecError> {
        f.code(field, &stored, ChannelCode::parse)
    }
}

/// A country: form only (`from_log`).
impl Stored<String> for CountryCode {
    fn store(&self) -> String {
        self.as_str().to_owned()
    }
    fn load(f: Fields, field: &'static str, stored: String) -> Result<CountryCode, CodecError> {
        f.code(field, &stored, CountryCode::from_log)
    }
}

/// An optional country: the empty string when absent.
impl Stored<String> for Option<CountryCode> {
    fn store(&self) -> String {
        self.map(|c| c.as_str().to_owned()).unwrap_or_default()
    }
    fn load(f: Fields, field: &'static str, stored: String) -> Result<Self, CodecError> {
        if stored.is_empty() {
            Ok(None)
        } else {
            CountryCode::load(f, field, stored).map(Some)
        }
    }
}

/// An optional sector: a proto3 `optional string`.
impl Stored<Option<String>> for Option<Sector> {
    fn store(&self) -> Option<String> {
        self.map(|s| s.store())
    }
    fn load(f: Fields, field: &'static str, stored: Option<String>) -> Result<Self, CodecError> {
        stored.map(|code| Sector::load(f, field, code)).transpose()
    }
}

/// A date: days since 1970-01-01 (fields ending `_days`).
impl Stored<i32> for Date {
    fn store(&self) -> i32 {
        super::days(*self)
    }
    fn load(f: Fields, field: &'static str, stored: i32) -> Result<Date, CodecError> {
        f.date(field, stored)
    }
}

/// An optional date: a proto3 `optional int32`.
impl Stored<Option<i32>> for Option<Date> {
    fn store(&self) -> Option<i32> {
        self.map(super::days)
    }
    fn load(f: Fields, field: &'static str, stored: Option<i32>) -> Result<Self, CodecError> {
        stored.map(|d| f.date(field, d)).transpose()
    }
}

/// Narrow integers travel as `uint32`.
macro_rules! stored_narrow {
    ($($t:ty),*) => {$(
        impl Stored<u32> for $t {
            fn store(&self) -> u32 {
                u32::from(*self)
            }
            fn load(f: Fields, field: &'static str, stored: u32) -> Result<$t, CodecError> {
                f.narrow(field, stored)
            }
        }
    )*};
}
stored_narrow!(u8, u16);

/// Sealed personal data: opaque bytes (fields ending `_sealed`).
impl Stored<Vec<u8>> for Sealed {
    fn store(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn load(_: Fields, _: &'static str, stored: Vec<u8>) -> Result<Sealed, CodecError> {
        Ok(Sealed(stored))
    }
}

/// The biometric reference: exactly 32 bytes.
impl Stored<Vec<u8>> for BiometricRef {
    fn store(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn load(f: Fields, field: &'static str, stored: Vec<u8>) -> Result<BiometricRef, CodecError> {
        <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| f.invalid(field))
    }
}

/// A DIVIPOLA department: its two-digit code as a number.
impl Stored<u32> for Department {
    fn store(&self) -> u32 {
        u32::from(self.code())
    }
    fn load(f: Fields, field: &'static str, stored: u32) -> Result<Department, CodecError> {
        f.department(field, stored)
    }
}

/// A DIVIPOLA municipality: its five-digit code as a number (form only).
impl Stored<u32> for Municipality {
    fn store(&self) -> u32 {
        self.code()
    }
    fn load(f: Fields, field: &'static str, stored: u32) -> Result<Municipality, CodecError> {
        f.municipality(field, stored)
    }
}

/// Document kinds: a `repeated string` of codes.
impl Stored<Vec<String>> for Vec<DocumentType> {
    fn store(&self) -> Vec<String> {
        super::document_codes(self)
    }
    fn load(f: Fields, field: &'static str, stored: Vec<String>) -> Result<Self, CodecError> {
        f.documents(field, &stored)
    }
}
