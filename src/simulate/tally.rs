//! The generator's own count of the caseload it wrote: only counts, never
//! personal data, so it can be printed, written as JSON and compared with
//! what the statistics read back from the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{person_status, AgeBand, CaseState, Date, PersonStatus};

/// Counts of a simulated caseload. Every map is keyed by a stable code
/// (status, two-digit DIVIPOLA department, sex, age band, sector, route,
/// event type), so two tallies compare exactly and serialize in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Persons (cases) counted.
    pub persons: u64,
    /// Events the simulated commands produced (new or deduplicated retries).
    pub events: u64,
    /// Commands sent.
    pub commands: u64,
    /// Commands refused (a generator bug if not 0); the person's case stops there.
    pub rejected: u64,
    /// Derived status on the simulation date ([`person_status`](fn@crate::domain::person_status) of each final state).
    pub status: BTreeMap<String, u64>,
    /// The status the generator intended for each person.
    pub intended_status: BTreeMap<String, u64>,
    /// Persons whose derived status differs from the intended one.
    pub status_mismatches: u64,
    /// Derived status by department of residence.
    pub status_by_department: BTreeMap<String, BTreeMap<String, u64>>,
    /// Persons by department of residence (after residence updates).
    pub department: BTreeMap<String, u64>,
    /// Persons by sex.
    pub sex: BTreeMap<String, u64>,
    /// Age band on the simulation date.
    pub age_band: BTreeMap<String, u64>,
    /// Persons under 18 on the simulation date.
    pub minors: u64,
    /// Certifications requested, by sector.
    pub certifications_by_sector: BTreeMap<String, u64>,
    /// Certifications requested, by route.
    pub certifications_by_route: BTreeMap<String, u64>,
    /// Certifications by stage (awarded, denied, pending ...).
    pub certifications_by_stage: BTreeMap<String, u64>,
    /// Events by type.
    pub events_by_type: BTreeMap<String, u64>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    *map.entry(key.to_string()).or_insert(0) += n;
}

impl Tally {
    /// Counts one case from its final state, as of `on`: everything a
    /// recount from the log can also derive (persons, status, department,
    /// sex, age band, minors, certifications). A state without a person is
    /// not counted.
    pub fn count_case(&mut self, state: &CaseState, on: Date) {
        let Some(person) = state.person() else { return };
        self.persons += 1;
        let status = person_status(state, on);
        let department = person.department.to_string();
        bump(&mut self.status, status.as_str(), 1);
        bump(
            self.status_by_department.entry(department.clone()).or_default(),
            status.as_str(),
            1,
        );
        bump(&mut self.department, &department, 1);
        bump(&mut self.sex, person.sex.as_str(), 1);
        let band = person.age_band_on(on);
        bump(&mut self.age_band, band.as_str(), 1);
        if band.is_minor() {
            self.minors += 1;
        }
        for c in state.certifications() {
            bump(&mut self.certifications_by_sector, c.sector.as_str(), 1);
            bump(&mut self.certifications_by_route, c.route.as_str(), 1);
            bump(&mut self.certifications_by_stage, c.stage.as_str(), 1);
        }
    }

    /// Counts the intended status of one person and whether the derived one agrees.
    pub fn count_intended(&mut self, intended: PersonStatus, derived: Option<PersonStatus>) {
        bump(&mut self.intended_status, intended.as_str(), 1);
        if derived != Some(intended) {
            self.status_mismatches += 1;
        }
    }

    /// Counts events by type.
    pub fn count_events<'a>(&mut self, types: impl IntoIterator<Item = &'a str>) {
        for t in types {
            self.events += 1;
            bump(&mut self.events_by_type, t, 1);
        }
    }

    /// Adds another tally (sums every count).
    pub fn merge(&mut self, other: &Tally) {
        self.persons += other.persons;
        self.events += other.events;
        self.commands += other.commands;
        self.rejected += other.rejected;
        self.status_mismatches += other.status_mismatches;
        self.minors += other.minors;
        for (mine, theirs) in [
            (&mut self.status, &other.status),
            (&mut self.intended_status, &other.intended_status),
            (&mut self.department, &other.department),
            (&mut self.sex, &other.sex),
            (&mut self.age_band, &other.age_band),
            (
                &mut self.certifications_by_sector,
                &other.certifications_by_sector,
            ),
            (&mut self.certifications_by_route, &other.certifications_by_route),
            (&mut self.certifications_by_stage, &other.certifications_by_stage),
            (&mut self.events_by_type, &other.events_by_type),
        ] {
            for (k, v) in theirs {
                bump(mine, k, *v);
            }
        }
        for (dept, statuses) in &other.status_by_department {
            let mine = self.status_by_department.entry(dept.clone()).or_default();
            for (k, v) in statuses {
                bump(mine, k, *v);
            }
        }
    }

    /// Share of persons with `status`, in per cent.
    pub fn status_share(&self, status: PersonStatus) -> f64 {
        percent(
            self.status.get(status.as_str()).copied().unwrap_or(0),
            self.persons,
        )
    }

    /// Share of persons of `department` (two digits) with `status`, in per cent.
    pub fn department_status_share(&self, department: &str, status: PersonStatus) -> f64 {
        let Some(statuses) = self.status_by_department.get(department) else {
            return 0.0;
        };
        let total: u64 = statuses.values().sum();
        percent(statuses.get(status.as_str()).copied().unwrap_or(0), total)
    }

    /// The part a recount from the log can check: everything but the
    /// generator's intentions and command counts.
    pub fn derived_part(&self) -> Tally {
        Tally {
            intended_status: BTreeMap::new(),
            status_mismatches: 0,
            commands: 0,
            rejected: 0,
            ..self.clone()
        }
    }

    /// The tally as a text table (counts and shares only).
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let n = self.persons;
        let section = |out: &mut String, title: &str, map: &BTreeMap<String, u64>, total: u64| {
            let _ = writeln!(out, "{title}");
            for (k, v) in map {
                let _ = writeln!(out, "  {k:<28} {v:>10} {:>6.1}%", percent(*v, total));
            }
        };
        let _ = writeln!(
            out,
            "persons {n}, events {} ({:.2} per person), commands {}, rejected {}, minors {} ({:.1}%)",
            self.events,
            self.events as f64 / n.max(1) as f64,
            self.commands,
            self.rejected,
            self.minors,
            percent(self.minors, n)
        );
        let _ = writeln!(
            out,
            "status (derived on the simulation date; intended; difference)"
        );
        let mut statuses: Vec<&String> = self.status.keys().chain(self.intended_status.keys()).collect();
        statuses.sort();
        statuses.dedup();
        for s in statuses {
            let derived = self.status.get(s).copied().unwrap_or(0);
            let intended = self.intended_status.get(s).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "  {s:<28} {derived:>10} {:>6.1}%   intended {intended:>10}   {:+}",
                percent(derived, n),
                derived as i64 - intended as i64
            );
        }
        let _ = writeln!(out, "  mismatches {}", self.status_mismatches);
        let _ = writeln!(out, "department (irregular share in brackets)");
        for (k, v) in &self.department {
            let _ = writeln!(
                out,
                "  {k:<28} {v:>10} {:>6.1}%   [{:.1}% irregular]",
                percent(*v, n),
                self.department_status_share(k, PersonStatus::Irregular)
            );
        }
        section(&mut out, "sex", &self.sex, n);
        let _ = writeln!(out, "age band");
        for band in AgeBand::ALL {
            let v = self.age_band.get(band.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "  {:<28} {v:>10} {:>6.1}%", band.as_str(), percent(v, n));
        }
        let certs: u64 = self.certifications_by_sector.values().sum();
        section(
            &mut out,
            "certifications by sector",
            &self.certifications_by_sector,
            certs,
        );
        section(
            &mut out,
            "certifications by route",
            &self.certifications_by_route,
            certs,
        );
        section(
            &mut out,
            "certifications by stage",
            &self.certifications_by_stage,
            certs,
        );
        section(&mut out, "events by type", &self.events_by_type, self.events);
        out
    }
}

/// `part` of `total` in per cent (0 for an empty total).
pub fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}
