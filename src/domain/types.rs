//! The closed vocabularies of the domain, each with a stable stored code.
//!
//! Codes are what the log, the projections and the published statistics
//! store, so they never change once released: rename a variant freely, never
//! its code. Every enum here has `ALL`, `as_str()` and `parse()`, and
//! serializes as its code.

/// Declares a fieldless enum with stable string codes, `ALL`, `as_str`,
/// `parse`, `Display` and serde as the code.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order (tables, generators, tests).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable stored code.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// Parses a stored code; `None` for an unknown one (codes are case-sensitive).
            pub fn parse(code: &str) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::domain::types::CodeEnum for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn parse(code: &str) -> Option<$name> {
                $name::parse(code)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&code).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} code {:?}",
                        stringify!($name),
                        code.chars().take(crate::limits::ECHOED_VALUE_CHARS_MAX).collect::<String>()
                    ))
                })
            }
        }
    };
}

pub(crate) use code_enum;

/// What `code_enum!` declares, for code that treats every closed
/// vocabulary alike (stored codes, probe values).
pub trait CodeEnum: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];

    /// The stable stored code.
    fn as_str(self) -> &'static str;

    /// Parses a stored code; `None` for an unknown one.
    fn parse(code: &str) -> Option<Self>;
}

code_enum! {
    /// Sex as declared in the identity document; statistics break down by it.
    pub enum Sex {
        /// Female.
        Female => "F",
        /// Male.
        Male => "M",
        /// Non-binary or not stated in the document.
        Unspecified => "X",
    }
}

code_enum! {
    /// Kinds of identity document a person presented. Only the kind is kept
    /// in the clear; numbers live inside the sealed identity.
    pub enum DocumentType {
        /// Venezuelan national identity card (valid or expired).
        VenezuelanCedula => "VENEZUELAN_CEDULA",
        /// Passport (valid or expired).
        Passport => "PASSPORT",
        /// Special Permanence Permit number.
        Pep => "PEP",
        /// Birth certificate, the usual document of minors.
        BirthCertificate => "BIRTH_CERTIFICATE",
        /// SC-2 safe-conduct of an asylum seeker.
        Sc2 => "SC2",
        /// Colombian foreigner ID card.
        CedulaExtranjeria => "CEDULA_EXTRANJERIA",
        /// A Colombian visa.
        Visa => "VISA",
        /// A Temporary Protection Permit already held.
        Ppt => "PPT",
        /// The RUMV registration number.
        Rumv => "RUMV",
    }
}

code_enum! {
    /// Why a person may apply through a channel (Decreto 216/2021 art. 4 and
    /// later channels). Which bases a channel accepts is channel data.
    pub enum EligibilityBasis {
        /// Held a PIP (entry and stay permit).
        Pip => "PIP",
        /// Held a PTP (temporary stay permit).
        Ptp => "PTP",
        /// Held a PEP (special permanence permit).
        Pep => "PEP",
        /// Held a PEP-FF (PEP for work formalisation).
        PepFf => "PEP_FF",
        /// Asylum seeker holding an SC-2 safe-conduct.
        Sc2AsylumSeeker => "SC2_ASYLUM_SEEKER",
        /// Irregularly present in Colombia on 31 January 2021.
        IrregularOn20210131 => "IRREGULAR_ON_2021_01_31",
        /// Entered regularly between 29 May 2021 and 28 May 2023.
        RegularEntry2021To2023 => "REGULAR_ENTRY_2021_2023",
        /// Guardian of a minor who held a PPT (PEP-Tutor).
        GuardianOfMinor => "GUARDIAN_OF_MINOR",
        /// Any other basis a channel's rules admit.
        Other => "OTHER",
    }
}

code_enum! {
    /// The instrument a channel grants; decides the regular status it gives.
    pub enum PermitType {
        /// Temporary Protection Permit (ETPV).
        Ppt => "PPT",
        /// Special Permanence Permit for guardians of minors.
        PepTutor => "PEP_TUTOR",
        /// Special visitor visa V.
        VisaV => "VISA_V",
        /// SC-2 safe-conduct of an asylum seeker.
        Sc2SafeConduct => "SC2_SAFE_CONDUCT",
    }
}

code_enum! {
    /// Why a duplicate card was requested.
    pub enum DuplicateCause {
        /// The card was lost.
        Loss => "LOSS",
        /// The card was stolen (police report).
        Theft => "THEFT",
        /// The card is damaged.
        Damage => "DAMAGE",
        /// Printed data must be corrected.
        DataCorrection => "DATA_CORRECTION",
    }
}

code_enum! {
    /// Grounds for cancelling a permit (Res. 971/2021, to confirm).
    pub enum CancellationGround {
        /// Expulsion or deportation.
        ExpulsionOrDeportation => "EXPULSION_OR_DEPORTATION",
        /// Criminal records.
        CriminalRecord => "CRIMINAL_RECORD",
        /// False information was given.
        FalseInformation => "FALSE_INFORMATION",
        /// Absent from Colombia for more than 180 continuous days.
        AbsenceOver180Days => "ABSENCE_OVER_180_DAYS",
        /// Risk to security.
        SecurityRisk => "SECURITY_RISK",
        /// The card was not collected in time (only via `AbandonCard`).
        UncollectedCard => "UNCOLLECTED_CARD",
        /// Another ground, recorded by code.
        Other => "OTHER",
    }
}

code_enum! {
    /// Why an application was denied.
    pub enum DenialReason {
        /// Criminal records.
        CriminalRecord => "CRIMINAL_RECORD",
        /// Annotations (alerts) in migration records.
        Annotation => "ANNOTATION",
        /// Open administrative or judicial proceedings.
        OpenProceedings => "OPEN_PROCEEDINGS",
        /// False information was given.
        FalseInformation => "FALSE_INFORMATION",
        /// The person does not meet the channel's requirements.
        Ineligible => "INELIGIBLE",
        /// Another reason.
        Other => "OTHER",
    }
}

code_enum! {
    /// How a worker's prior skills get recognised.
    pub enum CertificationRoute {
        /// SENA competency certification against a national standard.
        SenaCompetency => "SENA_COMPETENCY",
        /// Degree recognition (convalidación, Ministry of Education).
        DegreeRecognition => "DEGREE_RECOGNITION",
        /// Professional licence from a professional council.
        ProfessionalLicence => "PROFESSIONAL_LICENCE",
    }
}

code_enum! {
    /// Economic sector of work or of a certification.
    pub enum Sector {
        /// Commerce.
        Commerce => "COMMERCE",
        /// Hospitality and tourism.
        HospitalityTourism => "HOSPITALITY_TOURISM",
        /// Construction.
        Construction => "CONSTRUCTION",
        /// Manufacturing and food processing.
        ManufacturingFood => "MANUFACTURING_FOOD",
        /// Administration.
        Administration => "ADMINISTRATION",
        /// Beauty and personal care.
        BeautyPersonalCare => "BEAUTY_PERSONAL_CARE",
        /// Technology.
        Technology => "TECHNOLOGY",
        /// Health.
        Health => "HEALTH",
        /// Anything else.
        Other => "OTHER",
    }
}

code_enum! {
    /// How a person left the caseload; an exit is terminal.
    pub enum ExitKind {
        /// Left Colombia.
        Departed => "DEPARTED",
        /// Became a Colombian national.
        Nationalized => "NATIONALIZED",
        /// Died.
        Deceased => "DECEASED",
    }
}

code_enum! {
    /// The derived status statistics count (DOMAIN.md "Derived status").
    /// `Irregular` and `InProcess` are separate lines, never folded together.
    pub enum PersonStatus {
        /// Registered but without regular status.
        Irregular => "IRREGULAR",
        /// An application is in process.
        InProcess => "IN_PROCESS",
        /// Holds an active PPT.
        RegularPpt => "REGULAR_PPT",
        /// Holds a valid visa.
        RegularVisa => "REGULAR_VISA",
        /// Holds an active PEP-Tutor.
        RegularPepTutor => "REGULAR_PEP_TUTOR",
        /// Holds another active permit (Visa V, SC-2 ...).
        RegularOther => "REGULAR_OTHER",
        /// Exited: became Colombian.
        Nationalized => "NATIONALIZED",
        /// Exited: left Colombia.
        Departed => "DEPARTED",
        /// Exited: died.
        Deceased => "DECEASED",
    }
}

code_enum! {
    /// Age bands of the published statistics.
    pub enum AgeBand {
        /// 0 to 4 years.
        From0To4 => "0-4",
        /// 5 to 11 years.
        From5To11 => "5-11",
        /// 12 to 17 years.
        From12To17 => "12-17",
        /// 18 to 29 years.
        From18To29 => "18-29",
        /// 30 to 44 years.
        From30To44 => "30-44",
        /// 45 to 59 years.
        From45To59 => "45-59",
        /// 60 years and over.
        From60 => "60+",
    }
}

/// Age at which a person stops being a minor in Colombia.
pub const ADULT_AGE_YEARS: u32 = 18;

impl AgeBand {
    /// The band an age in whole years falls in.
    pub const fn of(age_years: u32) -> AgeBand {
        match age_years {
            0..=4 => AgeBand::From0To4,
            5..=11 => AgeBand::From5To11,
            12..=17 => AgeBand::From12To17,
            18..=29 => AgeBand::From18To29,
            30..=44 => AgeBand::From30To44,
            45..=59 => AgeBand::From45To59,
            _ => AgeBand::From60,
        }
    }

    /// Whether the band holds minors (stricter suppression, special channels).
    pub const fn is_minor(self) -> bool {
        matches!(self, AgeBand::From0To4 | AgeBand::From5To11 | AgeBand::From12To17)
    }
}

impl ExitKind {
    /// The derived status of a person who exited this way.
    pub const fn status(self) -> PersonStatus {
        match self {
            ExitKind::Departed => PersonStatus::Departed,
            ExitKind::Nationalized => PersonStatus::Nationalized,
            ExitKind::Deceased => PersonStatus::Deceased,
        }
    }
}

impl PermitType {
    /// The regular status an active permit of this type gives.
    pub const fn status(self) -> PersonStatus {
        match self {
            PermitType::Ppt => PersonStatus::RegularPpt,
            PermitType::PepTutor => PersonStatus::RegularPepTutor,
            PermitType::VisaV | PermitType::Sc2SafeConduct => PersonStatus::RegularOther,
        }
    }
}

/// A set of [`DocumentType`]s in two bytes, so case state keeps which kinds
/// of document a person holds without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DocumentSet(u16);

impl DocumentSet {
    /// The set of the given kinds (duplicates collapse).
    pub fn from_types(types: &[DocumentType]) -> DocumentSet {
        DocumentSet(types.iter().fold(0, |bits, &t| bits | Self::bit(t)))
    }

    /// Whether the set holds `kind`.
    pub const fn contains(self, kind: DocumentType) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// Number of kinds in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds, in [`DocumentType::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = DocumentType> {
        DocumentType::ALL
            .iter()
            .copied()
            .filter(move |&t| self.contains(t))
    }

    const fn bit(kind: DocumentType) -> u16 {
        1 << (kind as u16)
    }
}

code_enum! {
    /// A data subject's request under Ley 1581 de 2012 (arts. 14 and 15):
    /// the kind sets the legal answer period.
    pub enum SubjectRequestKind {
        /// A query (consulta, art. 14): what is held about the person, who
        /// consulted it. Answered within 10 business days, extendable once by 5.
        Query => "QUERY",
        /// A claim (reclamo, art. 15): rectification, update, deletion or a
        /// breach of the law. Answered within 15 business days, extendable once by 8.
        Claim => "CLAIM",
    }
}

impl SubjectRequestKind {
    /// Business days to answer, counted from the day after receipt.
    pub const fn answer_business_days(self) -> u32 {
        match self {
            SubjectRequestKind::Query => 10,
            SubjectRequestKind::Claim => 15,
        }
    }

    /// Business days the one extension adds, counted from the day after
    /// the first term ends.
    pub const fn extension_business_days(self) -> u32 {
        match self {
            SubjectRequestKind::Query => 5,
            SubjectRequestKind::Claim => 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(all: &[T], code: fn(T) -> &'static str) {
            for (i, a) in all.iter().enumerate() {
                for b in &all[i + 1..] {
                    assert_ne!(code(*a), code(*b));
                }
            }
        }
        check(Sex::ALL, Sex::as_str);
        check(DocumentType::ALL, DocumentType::as_str);
        check(EligibilityBasis::ALL, EligibilityBasis::as_str);
        check(PersonStatus::ALL, PersonStatus::as_str);
        for basis in EligibilityBasis::ALL {
            assert_eq!(EligibilityBasis::parse(basis.as_str()), Some(*basis));
        }
        for status in PersonStatus::ALL {
            assert_eq!(PersonStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(
            EligibilityBasis::IrregularOn20210131.as_str(),
            "IRREGULAR_ON_2021_01_31"
        );
        assert_eq!(DocumentType::parse("passport"), None);
        assert_eq!(PersonStatus::ALL.len(), 9);
    }

    #[test]
    fn enums_serialize_as_their_codes() {
        assert_eq!(
            serde_json::to_string(&Sector::HospitalityTourism).unwrap(),
            "\"HOSPITALITY_TOURISM\""
        );
        assert_eq!(serde_json::from_str::<Sex>("\"X\"").unwrap(), Sex::Unspecified);
        let err = serde_json::from_str::<Sex>("\"Q\"").unwrap_err().to_string();
        assert!(err.contains("unknown Sex code"), "{err}");
    }

    #[test]
    fn age_bands_cover_the_published_edges() {
        let expect = [
            (0, "0-4"),
            (4, "0-4"),
            (5, "5-11"),
            (11, "5-11"),
            (12, "12-17"),
            (17, "12-17"),
            (18, "18-29"),
            (29, "18-29"),
            (30, "30-44"),
            (44, "30-44"),
            (45, "45-59"),
            (59, "45-59"),
            (60, "60+"),
            (120, "60+"),
        ];
        for (age, code) in expect {
            assert_eq!(AgeBand::of(age).as_str(), code, "age {age}");
            assert_eq!(AgeBand::of(age).is_minor(), age < ADULT_AGE_YEARS, "age {age}");
        }
    }

    #[test]
    fn document_set_holds_kinds_without_duplicates() {
        let set =
            DocumentSet::from_types(&[DocumentType::Passport, DocumentType::Rumv, DocumentType::Passport]);
        assert_eq!(set.len(), 2);
        assert!(set.contains(DocumentType::Passport));
        assert!(!set.contains(DocumentType::Pep));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![DocumentType::Passport, DocumentType::Rumv]
        );
        assert!(DocumentSet::default().is_empty());
    }

    #[test]
    fn permit_types_map_to_statuses() {
        assert_eq!(PermitType::Ppt.status(), PersonStatus::RegularPpt);
        assert_eq!(PermitType::PepTutor.status(), PersonStatus::RegularPepTutor);
        assert_eq!(PermitType::VisaV.status(), PersonStatus::RegularOther);
        assert_eq!(PermitType::Sc2SafeConduct.status(), PersonStatus::RegularOther);
        assert_eq!(ExitKind::Deceased.status(), PersonStatus::Deceased);
    }
}
