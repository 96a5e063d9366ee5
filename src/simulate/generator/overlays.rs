//! Overlays after the main path, in date order: a duplicate card, a change
//! of residence, a labour certification, an exit from the country.

use super::commands::Recorder;
use super::person::{municipality_of, pick_department, Attributes, Role};
use super::rng::Rng;
use super::timeline::day;
use super::{Path, CERTIFICATION_SECTORS, TODAY};
use crate::domain::{
    CertificationRoute, Command, CountryCode, Date, Department, DuplicateCause, ExitKind, PersonStatus,
    Sector,
};

/// Records the overlays after a main path that ended on `end_of_path`;
/// returns the status intended on [`TODAY`] (the path's, or an exit's).
pub(super) fn record_overlays(
    rng: &mut Rng,
    out: &mut Recorder,
    who: &Attributes,
    path: Path,
    end_of_path: Date,
) -> PersonStatus {
    let mut cur = end_of_path;
    let mut department = who.department;
    if path.has_delivered_card_at_end() && rng.chance(0.04) {
        cur = duplicate_card(rng, out, department, cur);
    }
    if rng.chance(0.03) {
        (department, cur) = move_residence(rng, out, cur);
    }
    if who.adult && path.is_regular() && rng.chance(0.028) {
        cur = certification(rng, out, who, department, cur);
    }
    let mut intended = path.intended();
    if rng.chance(0.006) {
        intended = exit(rng, out, department, cur);
    }
    intended
}

/// A duplicate of the delivered card (requested, issued, delivered), if
/// there is room before [`TODAY`]; returns the date of the last command.
fn duplicate_card(rng: &mut Rng, out: &mut Recorder, department: Department, cur: Date) -> Date {
    let room = day(TODAY) - 60 - day(cur);
    if room < 30 {
        return cur;
    }
    let requested = cur.add_days(rng.range(30, room.min(700)));
    const CAUSES: [(DuplicateCause, f64); 4] = [
        (DuplicateCause::Loss, 50.0),
        (DuplicateCause::Theft, 25.0),
        (DuplicateCause::Damage, 15.0),
        (DuplicateCause::DataCorrection, 10.0),
    ];
    let cause = CAUSES[rng.weighted(&CAUSES.map(|c| c.1))].0;
    let issued = requested.add_days(rng.range(10, 45));
    let delivered = issued.add_days(rng.range(5, 15));
    out.push(
        rng,
        department,
        Role::Caseworker,
        Command::RequestDuplicate { on: requested, cause },
    );
    out.push(
        rng,
        department,
        Role::Caseworker,
        Command::IssueDuplicate { on: issued },
    );
    out.push(
        rng,
        department,
        Role::Caseworker,
        Command::DeliverCard { on: delivered },
    );
    delivered
}

/// A move to another department and municipality; returns the new
/// department (whose staff record what follows) and the date of the move.
fn move_residence(rng: &mut Rng, out: &mut Recorder, cur: Date) -> (Department, Date) {
    let on = cur.add_days(rng.range(0, (day(TODAY) - day(cur)) / 2));
    let k = pick_department(rng);
    let (new_department, new_municipality) = municipality_of(rng, k);
    out.push(
        rng,
        new_department,
        Role::Caseworker,
        Command::UpdateResidence {
            on,
            department: new_department,
            municipality: new_municipality,
        },
    );
    (new_department, on)
}

/// A labour competence certification requested once the person is an
/// adult, then assessed and decided as far as [`TODAY`] allows; returns the
/// date of the last command.
fn certification(
    rng: &mut Rng,
    out: &mut Recorder,
    who: &Attributes,
    department: Department,
    cur: Date,
) -> Date {
    let mut cur = cur;
    let adult_from = Date::new(who.birth_year + 18, who.birth_month, 1).expect("valid date");
    let lo = cur.max(adult_from);
    if lo <= TODAY {
        let requested = lo.add_days(rng.range(0, (day(TODAY) - day(lo)) * 2 / 3));
        let sector = CERTIFICATION_SECTORS[rng.weighted(&CERTIFICATION_SECTORS.map(|s| s.1))].0;
        let route = [
            CertificationRoute::SenaCompetency,
            CertificationRoute::DegreeRecognition,
            CertificationRoute::ProfessionalLicence,
        ][rng.weighted(&[85.0, 10.0, 5.0])];
        out.push(
            rng,
            department,
            Role::Certifier,
            Command::RequestCertification {
                on: requested,
                route,
                sector,
            },
        );
        cur = requested;
        let assessed = requested.add_days(rng.range(30, 120));
        if assessed <= TODAY {
            let passed = rng.chance(0.85);
            out.push(
                rng,
                department,
                Role::Certifier,
                Command::AssessCertification {
                    certification_id: 1,
                    on: assessed,
                    passed,
                },
            );
            cur = assessed;
            let decided = assessed.add_days(rng.range(7, 60));
            if decided <= TODAY {
                let command = if passed {
                    let (standard_code, issuing_body) = standard(route, sector);
                    Command::AwardCertification {
                        certification_id: 1,
                        on: decided,
                        standard_code: standard_code.to_string(),
                        issuing_body: issuing_body.to_string(),
                    }
                } else {
                    Command::DenyCertification {
                        certification_id: 1,
                        on: decided,
                        reason: "ASSESSMENT_FAILED".to_string(),
                    }
                };
                out.push(rng, department, Role::Certifier, command);
                cur = decided;
            }
        }
    }
    cur
}

/// An exit (departure, death, nationality) after the last command; returns
/// the status it leaves the person in.
fn exit(rng: &mut Rng, out: &mut Recorder, department: Department, cur: Date) -> PersonStatus {
    let on = cur.add_days(rng.range(0, day(TODAY) - day(cur)));
    let kind =
        [ExitKind::Departed, ExitKind::Deceased, ExitKind::Nationalized][rng.weighted(&[75.0, 10.0, 15.0])];
    out.push(
        rng,
        department,
        Role::Caseworker,
        Command::RecordExit {
            on,
            kind,
            destination: departure_destination(kind, on),
        },
    );
    kind.status()
}

/// Synthetic standard code and issuing body of an awarded certification.
fn standard(route: CertificationRoute, sector: Sector) -> (&'static str, &'static str) {
    match route {
        CertificationRoute::SenaCompetency => (
            match sector {
                Sector::Commerce => "NCL-SIM-210601",
                Sector::HospitalityTourism => "NCL-SIM-260101",
                Sector::Construction => "NCL-SIM-280201",
                Sector::ManufacturingFood => "NCL-SIM-230101",
                Sector::Administration => "NCL-SIM-210301",
                Sector::BeautyPersonalCare => "NCL-SIM-250203",
                Sector::Technology => "NCL-SIM-220501",
                Sector::Health => "NCL-SIM-230102",
                Sector::Other => "NCL-SIM-000000",
            },
            "SENA",
        ),
        CertificationRoute::DegreeRecognition => ("CONVALIDACION-120D", "MEN"),
        CertificationRoute::ProfessionalLicence => ("LICENCIA-PROFESIONAL", "CONSEJO-PROFESIONAL"),
    }
}

/// The destination recorded for a departure: derived from the exit date's
/// day (no random draw, so the rest of the simulation is unchanged): one in
/// seven not known, the others back to Venezuela or onwards to Peru,
/// Ecuador, Chile, the United States or Spain.
fn departure_destination(kind: ExitKind, on: Date) -> Option<CountryCode> {
    if kind != ExitKind::Departed {
        return None;
    }
    [
        None,
        Some("VEN"),
        Some("PER"),
        Some("ECU"),
        Some("CHL"),
        Some("USA"),
        Some("ESP"),
    ][usize::from(on.day()) % 7]
        .and_then(CountryCode::parse)
}
