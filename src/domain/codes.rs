//! Short validated codes kept inline (no heap), and the rule for free codes.
//!
//! Case state is rebuilt for millions of people, so the codes it holds are
//! fixed-size values, not `String`s. The clear-text log must never carry
//! personal data, so text fields that are not sealed are restricted to codes
//! (see [`check_code`]): a caseworker cannot type a name into a reason.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest channel code.
pub const CHANNEL_CODE_BYTES_MAX: usize = 15;
/// Longest free code (reason, site, operator, standard, issuing body, legal basis).
pub const CODE_BYTES_MAX: usize = 64;

/// A channel's code, e.g. `ETPV`, `PEP_TUTOR`: 1..=15 of `A-Z 0-9 _`,
/// starting with a letter. Sixteen bytes, `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelCode {
    len: u8,
    bytes: [u8; CHANNEL_CODE_BYTES_MAX],
}

impl ChannelCode {
    /// Placeholder channel of a permit whose application is missing from the
    /// log (cannot happen through `decide`; `apply` must still be total).
    pub const UNKNOWN: ChannelCode = ChannelCode {
        len: 7,
        bytes: *b"UNKNOWN\0\0\0\0\0\0\0\0",
    };

    /// Parses a code; `None` if empty, too long or outside `A-Z 0-9 _`.
    pub fn parse(text: &str) -> Option<ChannelCode> {
        let src = text.as_bytes();
        let well_formed = !src.is_empty()
            && src.len() <= CHANNEL_CODE_BYTES_MAX
            && src[0].is_ascii_uppercase()
            && src
                .iter()
                .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return None;
        }
        let mut bytes = [0u8; CHANNEL_CODE_BYTES_MAX];
        bytes[..src.len()].copy_from_slice(src);
        Some(ChannelCode {
            len: src.len() as u8,
            bytes,
        })
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for ChannelCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChannelCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelCode({})", self.as_str())
    }
}

impl Serialize for ChannelCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChannelCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChannelCode, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ChannelCode::parse(&text).ok_or_else(|| serde::de::Error::custom("invalid channel code"))
    }
}

// `ISO_3166_VERSION` and `ISO_3166_ALPHA3` (code, English short name), sorted
// by code; built by build.rs from `iso3166_alpha3.tsv` (Debian's iso-codes).
include!(concat!(env!("OUT_DIR"), "/iso3166_alpha3.rs"));

/// The codes of ICAO Doc 9303 (part 3) that machine-readable travel documents
/// carry in the nationality field of a person without one or with refugee
/// status, accepted besides ISO 3166-1: a stateless person or a refugee cannot
/// be registered with a made-up country. Not ISO 3166 codes (`XX?` is a
/// user-assigned range there).
pub const ICAO_NATIONALITY_CODES: [([u8; 3], &str); 4] = [
    (*b"XXA", "Stateless person (1954 Convention)"),
    (*b"XXB", "Refugee (1951 Convention)"),
    (*b"XXC", "Refugee (other than the 1951 Convention)"),
    (*b"XXX", "Person of unspecified nationality"),
];

/// A nationality: an ISO 3166-1 alpha-3 country code (`VEN`), or one of
/// [`ICAO_NATIONALITY_CODES`]; three bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 3]);

impl CountryCode {
    /// Venezuela, the nationality of nearly every case.
    pub const VEN: CountryCode = CountryCode(*b"VEN");

    /// Parses an assigned ISO 3166-1 alpha-3 code ([`ISO_3166_VERSION`]) or an
    /// ICAO nationality code (`XXA` stateless, ...); `None` otherwise.
    pub fn parse(text: &str) -> Option<CountryCode> {
        let code = CountryCode::from_log(text)?;
        code.name().is_some().then_some(code)
    }

    /// A code read back from the log: only its form is checked (three
    /// uppercase ASCII letters), because a record accepted before the list
    /// was checked must still decode. Never for input.
    pub fn from_log(text: &str) -> Option<CountryCode> {
        let bytes: [u8; 3] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_uppercase)
            .then_some(CountryCode(bytes))
    }

    /// The English short name (ISO 3166-1, e.g. `Venezuela, Bolivarian
    /// Republic of`) or the ICAO meaning; `None` for an unlisted code read
    /// from the log.
    pub fn name(self) -> Option<&'static str> {
        ISO_3166_ALPHA3
            .binary_search_by_key(&self.0, |&(code, _)| code)
            .ok()
            .map(|i| ISO_3166_ALPHA3[i].1)
            .or_else(|| {
                ICAO_NATIONALITY_CODES
                    .iter()
                    .find(|&&(code, _)| code == self.0)
                    .map(|&(_, name)| name)
            })
    }

    /// Every accepted code: ISO 3166-1 in code order, then the ICAO codes.
    pub fn all() -> impl Iterator<Item = CountryCode> {
        ISO_3166_ALPHA3
            .iter()
            .chain(ICAO_NATIONALITY_CODES.iter())
            .map(|&(code, _)| CountryCode(code))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CountryCode, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        CountryCode::parse(&text).ok_or_else(|| serde::de::Error::custom("not an ISO 3166-1 alpha-3 code"))
    }
}

/// Checks a free code carried in the clear (reason, site, operator, standard
/// code, issuing body, legal basis): 1..=64 ASCII letters, digits or one of
/// `_ - . / :`. No spaces, so no names or sentences reach the clear log.
pub fn check_code(text: &str) -> Result<(), CodeError> {
    if text.is_empty() {
        return Err(CodeError::Empty);
    }
    if text.len() > CODE_BYTES_MAX {
        return Err(CodeError::TooLong);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':');
    if !text.chars().all(allowed) {
        return Err(CodeError::NotACode);
    }
    Ok(())
}

/// Why [`check_code`] refuses a free code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The empty string.
    #[error("must not be empty")]
    Empty,
    /// More than [`CODE_BYTES_MAX`] bytes.
    #[error("longer than {CODE_BYTES_MAX} bytes")]
    TooLong,
    /// A character other than ASCII letters, digits and `_ - . / :`.
    #[error("must be a code of ASCII letters, digits and _-./: (no free text)")]
    NotACode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_codes_are_short_uppercase_words() {
        let code = ChannelCode::parse("PEP_TUTOR").unwrap();
        assert_eq!(code.as_str(), "PEP_TUTOR");
        assert_eq!(ChannelCode::parse("SC2").unwrap().as_str(), "SC2");
        for bad in ["", "etpv", "2SC", "ETPV-2", "A_VERY_LONG_CODE_X", "ÉTPV"] {
            assert_eq!(ChannelCode::parse(bad), None, "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"PEP_TUTOR\"");
        assert_eq!(std::mem::size_of::<ChannelCode>(), 16);
    }

    #[test]
    fn country_codes_are_three_uppercase_letters() {
        assert_eq!(CountryCode::parse("VEN"), Some(CountryCode::VEN));
        assert_eq!(CountryCode::parse("ven"), None);
        assert_eq!(CountryCode::parse("VE"), None);
        assert_eq!(CountryCode::parse("V3N"), None);
    }

    #[test]
    fn country_codes_are_assigned_iso_3166_codes() {
        let version_line = include_str!("iso3166_alpha3.tsv")
            .lines()
            .find_map(|l| l.strip_prefix("# version:"))
            .map(str::trim);
        assert_eq!(version_line, Some(ISO_3166_VERSION));
        assert_eq!(ISO_3166_VERSION, "iso-codes 4.15.0");
        assert_eq!(ISO_3166_ALPHA3.len(), 249);
        assert!(ISO_3166_ALPHA3.windows(2).all(|w| w[0].0 < w[1].0));

        for (code, name) in [
            ("VEN", "Venezuela, Bolivarian Republic of"),
            ("COL", "Colombia"),
            ("ECU", "Ecuador"),
            ("PER", "Peru"),
            ("HTI", "Haiti"),
            ("CUB", "Cuba"),
            ("ALA", "Åland Islands"),
        ] {
            let c = CountryCode::parse(code).unwrap_or_else(|| panic!("{code}"));
            assert_eq!(c.name(), Some(name));
        }
        // Unassigned, withdrawn (Netherlands Antilles, Serbia and Montenegro)
        // and user-assigned codes are refused.
        for bad in ["ZZZ", "AAA", "ANT", "SCG", "XXY", "EUE"] {
            assert_eq!(CountryCode::parse(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<CountryCode>("\"ZZZ\"").is_err());
        // A record from before the list was checked still decodes.
        let old = CountryCode::from_log("ZZZ").unwrap();
        assert_eq!((old.as_str(), old.name()), ("ZZZ", None));
        assert_eq!(CountryCode::from_log("zzz"), None);
    }

    #[test]
    fn icao_codes_name_stateless_persons_and_refugees() {
        for code in ["XXA", "XXB", "XXC", "XXX"] {
            let c = CountryCode::parse(code).unwrap_or_else(|| panic!("{code}"));
            assert!(c.name().is_some());
            // Not an ISO code: the two lists do not overlap.
            assert!(ISO_3166_ALPHA3.iter().all(|&(iso, _)| iso != c.0));
        }
        assert_eq!(
            CountryCode::parse("XXA").and_then(CountryCode::name),
            Some("Stateless person (1954 Convention)")
        );
        assert_eq!(CountryCode::all().count(), 253);
    }

    #[test]
    fn free_codes_refuse_free_text() {
        assert!(check_code("BOG-CALLE-100").is_ok());
        assert!(check_code("NTC-2345.01").is_ok());
        assert!(check_code("").is_err());
        assert!(check_code("Maria Perez").is_err());
        assert!(check_code(&"A".repeat(65)).is_err());
        assert!(check_code("José").is_err());
    }
}
