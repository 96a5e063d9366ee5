//! Person attributes: who the person is (department, sex, age), their
//! documents and fictitious identity, and the staff who record their case.

use super::rng::{mix64, Rng};
use super::{Path, AGE_SHARES, DEPARTMENT_SHARES, FEMALE_SHARE, TODAY};
use crate::cases::{Identity, IdentityDocument};
use crate::domain::{Date, Department, DocumentType, EligibilityBasis, Municipality, Sex};
use crate::log::Actor;

/// Who a person is: drawn first, from the shares of DOMAIN.md.
pub(super) struct Attributes {
    pub(super) department: Department,
    pub(super) municipality: Municipality,
    pub(super) sex: Sex,
    /// Age on [`TODAY`].
    pub(super) age: u32,
    pub(super) birth_year: u16,
    pub(super) birth_month: u8,
    pub(super) birth: Date,
    pub(super) adult: bool,
}

/// Who: department and municipality, sex, age and birth date.
pub(super) fn draw_attributes(rng: &mut Rng) -> Attributes {
    let dept_k = pick_department(rng);
    let (department, municipality) = municipality_of(rng, dept_k);
    let sex = if rng.unit() * 100.0 < FEMALE_SHARE {
        Sex::Female
    } else {
        Sex::Male
    };
    let band = rng.weighted(&AGE_SHARES.map(|a| a.2));
    let age = rng.range(i64::from(AGE_SHARES[band].0), i64::from(AGE_SHARES[band].1)) as u32;
    let birth_year = TODAY.year() - age as u16;
    let birth_month = 1 + rng.below(12) as u8;
    let birth_day = 1 + rng.below(28) as u8;
    let birth = Date::new(birth_year, birth_month, birth_day).expect("valid birth date");
    Attributes {
        department,
        municipality,
        sex,
        age,
        birth_year,
        birth_month,
        birth,
        adult: age >= 18,
    }
}

/// The eligibility basis a pre-registration states.
pub(super) fn draw_basis(rng: &mut Rng) -> EligibilityBasis {
    const BASES: [(EligibilityBasis, f64); 7] = [
        (EligibilityBasis::Pep, 35.0),
        (EligibilityBasis::IrregularOn20210131, 35.0),
        (EligibilityBasis::RegularEntry2021To2023, 15.0),
        (EligibilityBasis::Pip, 5.0),
        (EligibilityBasis::Ptp, 5.0),
        (EligibilityBasis::PepFf, 3.0),
        (EligibilityBasis::Sc2AsylumSeeker, 2.0),
    ];
    BASES[rng.weighted(&BASES.map(|b| b.1))].0
}

/// The kinds of identity document the person holds: by age, basis and path.
pub(super) fn document_kinds(
    rng: &mut Rng,
    who: &Attributes,
    basis: EligibilityBasis,
    path: Path,
) -> Vec<DocumentType> {
    let mut kinds = Vec::new();
    if who.age <= 11 {
        kinds.push(DocumentType::BirthCertificate);
    } else if !who.adult {
        kinds.push(if rng.chance(0.5) {
            DocumentType::VenezuelanCedula
        } else {
            DocumentType::BirthCertificate
        });
    } else {
        kinds.push(if rng.chance(0.88) {
            DocumentType::VenezuelanCedula
        } else {
            DocumentType::Passport
        });
        if rng.chance(0.2) && !kinds.contains(&DocumentType::Passport) {
            kinds.push(DocumentType::Passport);
        }
        if matches!(basis, EligibilityBasis::Pep | EligibilityBasis::PepFf) && path != Path::PepTutor {
            kinds.push(DocumentType::Pep);
        }
    }
    if path == Path::VisaOnly {
        if !kinds.contains(&DocumentType::Passport) {
            kinds.push(DocumentType::Passport);
        }
        kinds.push(DocumentType::Visa);
    }
    kinds
}

/// The person's identity in clear: their documents' numbers (unique per
/// seed) and a fictitious name, birth date, phone, email and address.
pub(super) fn draw_identity(
    rng: &mut Rng,
    seed: u64,
    index: u64,
    who: &Attributes,
    kinds: &[DocumentType],
) -> Identity {
    let documents: Vec<IdentityDocument> = kinds
        .iter()
        .map(|k| IdentityDocument {
            doc_type: k.as_str().to_string(),
            number: document_number(seed, index, *k),
        })
        .collect();
    let given = match who.sex {
        Sex::Female => rng.pick(&GIVEN_FEMALE),
        _ => rng.pick(&GIVEN_MALE),
    };
    Identity {
        given_names: (*given).to_string(),
        family_names: format!("{} {}", rng.pick(&FAMILY), rng.pick(&FAMILY)),
        birth_date: who.birth.to_string(),
        documents,
        phone: format!("+57 3{}", rng.digits(9)),
        email: format!("persona.{}@ejemplo.invalid", rng.digits(8)),
        address: format!(
            "Calle ficticia {} # {}-{}",
            1 + rng.below(200),
            1 + rng.below(99),
            1 + rng.below(99)
        ),
    }
}

const GIVEN_FEMALE: [&str; 10] = [
    "Ana",
    "Maria",
    "Luisa",
    "Carmen",
    "Rosa",
    "Elena",
    "Sofia",
    "Valentina",
    "Daniela",
    "Gabriela",
];
const GIVEN_MALE: [&str; 10] = [
    "Jose", "Luis", "Carlos", "Juan", "Pedro", "Miguel", "Andres", "Jorge", "Diego", "Rafael",
];
/// Clearly fictitious family names.
const FAMILY: [&str; 8] = [
    "Ficticio",
    "Ejemplo",
    "Prueba",
    "Simulado",
    "Muestra",
    "Inventado",
    "Modelo",
    "Sintetico",
];

/// A document number unique among the persons of one seed: an affine
/// bijection of the index modulo `10^width`.
pub(super) fn document_number(seed: u64, index: u64, kind: DocumentType) -> String {
    let (modulus, multiplier, width, prefix, salt): (u64, u64, usize, &str, u64) = match kind {
        DocumentType::VenezuelanCedula => (100_000_000, 73_812_649, 8, "V", 1),
        DocumentType::Passport => (1_000_000_000, 512_345_679, 9, "", 2),
        DocumentType::BirthCertificate => (10_000_000_000, 7_777_777_771, 10, "", 3),
        DocumentType::Pep => (1_000_000_000, 987_654_323, 9, "", 4),
        _ => (100_000_000, 24_681_357, 8, "", 5),
    };
    let offset = mix64(seed ^ salt.wrapping_mul(0x1000_0000_01b3)) % modulus;
    let n = ((u128::from(index) * u128::from(multiplier) + u128::from(offset)) % u128::from(modulus)) as u64;
    format!("{prefix}{n:0width$}")
}

pub(super) fn municipality_of(rng: &mut Rng, k: usize) -> (Department, Municipality) {
    let (code, _, municipalities) = DEPARTMENT_SHARES[k];
    let m = if municipalities.len() == 1 || rng.chance(0.7) {
        municipalities[0]
    } else {
        municipalities[1 + rng.below(municipalities.len() as u64 - 1) as usize]
    };
    let department = Department::new(code).expect("table holds valid departments");
    let municipality = Municipality::new(m).expect("table holds valid municipalities");
    (department, municipality)
}

pub(super) fn pick_department(rng: &mut Rng) -> usize {
    rng.weighted(&DEPARTMENT_SHARES.map(|d| d.1))
}

#[derive(Clone, Copy)]
pub(super) enum Role {
    Caseworker,
    Supervisor,
    Certifier,
}

pub(super) fn actor(rng: &mut Rng, department: Department, role: Role) -> Actor {
    let (office, user) = match role {
        Role::Caseworker => (
            format!("CFSM-{department}"),
            format!("sim-cfsm-{department}-agent{}", 1 + rng.below(8)),
        ),
        Role::Supervisor => (
            format!("CFSM-{department}"),
            format!("sim-cfsm-{department}-supervisor{}", 1 + rng.below(2)),
        ),
        Role::Certifier => (
            format!("SENA-{department}"),
            format!("sim-sena-{department}-agent{}", 1 + rng.below(4)),
        ),
    };
    Actor {
        user_id: user,
        office,
    }
}
