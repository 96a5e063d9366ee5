//! Application rules: pre-registration, survey, biometrics, review, decision,
//! appeal and withdrawal.
//!
//! ```text
//! REGISTERED ─PreRegister→ PRE_REGISTERED ─ScheduleBiometrics→ BIOMETRICS_SCHEDULED
//!   BIOMETRICS_SCHEDULED ─RecordMissedAppointment→ APPOINTMENT_MISSED ─ScheduleBiometrics→ ...
//!   BIOMETRICS_SCHEDULED ─RecordBiometricCapture→ UNDER_REVIEW ⇄ INFORMATION_REQUIRED
//!   UNDER_REVIEW ─Approve→ APPROVED      UNDER_REVIEW | INFORMATION_REQUIRED ─Deny→ DENIED
//!   DENIED ─FileAppeal (within the window)→ APPEAL_FILED ─DecideAppeal→ APPROVED | DENIED_FINAL
//!   any undecided stage ─Withdraw→ WITHDRAWN
//! ```

use super::{recorded, require_code};
use crate::domain::case::{CaseState, Stage};
use crate::domain::channels::ChannelCatalog;
use crate::domain::codes::ChannelCode;
use crate::domain::command::Command;
use crate::domain::date::Date;
use crate::domain::error::Rejection;
use crate::domain::event::Event;
use crate::domain::family::LinkedCases;
use crate::domain::types::{EligibilityBasis, ADULT_AGE_YEARS};

/// Most applications one case may hold.
pub const APPLICATIONS_MAX: u32 = 32;
/// Largest household a survey may declare.
pub const HOUSEHOLD_SIZE_MAX: u8 = 30;
/// Furthest ahead an appointment may be given, in days.
pub const APPOINTMENT_LEAD_DAYS_MAX: i64 = 365;
/// Most information requests in one application.
pub const INFORMATION_REQUESTS_MAX: u8 = 10;

impl CaseState {
    pub(super) fn decide_application(
        &self,
        command: &Command,
        catalog: &ChannelCatalog,
        linked: &LinkedCases,
    ) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::PreRegister { on, channel, basis } => {
                self.pre_register(name, *on, *channel, *basis, catalog, linked)
            }
            Command::CompleteSurvey {
                household_size,
                employed,
                sector,
                ..
            } => {
                self.require(name, &Stage::UNDECIDED, |_| {
                    "no undecided application is open".into()
                })?;
                if let Some(survey) = self.application.as_ref().and_then(|app| app.survey) {
                    return Err(self.illegal(name, format!("the survey was completed on {}", survey.on)));
                }
                if !(1..=HOUSEHOLD_SIZE_MAX).contains(household_size) {
                    let reason = format!("must be 1..={HOUSEHOLD_SIZE_MAX}");
                    return Err(Rejection::invalid("household_size", reason));
                }
                if sector.is_some() && !employed {
                    return Err(Rejection::invalid("sector", "a sector needs employed = true"));
                }
                Ok(recorded(command))
            }
            Command::ScheduleBiometrics {
                on,
                appointment_on,
                site,
            } => self.schedule_biometrics(name, *on, *appointment_on, site, catalog),
            Command::RecordMissedAppointment { on } => {
                self.require(name, &[Stage::BiometricsScheduled], |_| {
                    "no appointment is pending".into()
                })?;
                let appointment_on = self.application.as_ref().and_then(|app| app.appointment_on);
                if let Some(appointment_on) = appointment_on.filter(|day| on < day) {
                    let reason = format!("the appointment is on {appointment_on}");
                    return Err(self.rule(name, "APPOINTMENT_NOT_REACHED", "on", reason));
                }
                Ok(vec![Event::BiometricAppointmentMissed { on: *on }])
            }
            Command::RecordBiometricCapture {
                site,
                operator,
                biometric_ref,
                ..
            } => {
                self.require(name, &[Stage::BiometricsScheduled], |stage| match stage {
                    Stage::UnderReview | Stage::InformationRequired => {
                        "biometrics were already captured".into()
                    }
                    _ => "no biometric appointment is pending".into(),
                })?;
                require_code("site", site)?;
                require_code("operator", operator)?;
                if biometric_ref.iter().all(|&b| b == 0) {
                    return Err(Rejection::invalid(
                        "biometric_ref",
                        "an all-zero reference is not a reference",
                    ));
                }
                Ok(recorded(command))
            }
            Command::RequestInformation { on, reason } => {
                self.require(name, &[Stage::UnderReview], |_| {
                    "no application is under review".into()
                })?;
                require_code("reason", reason)?;
                let requests = self
                    .application
                    .as_ref()
                    .map_or(0, |app| app.information_requests);
                if requests >= INFORMATION_REQUESTS_MAX {
                    let why = format!("information was already requested {requests} times");
                    return Err(self.illegal(name, why));
                }
                Ok(vec![Event::InformationRequested {
                    on: *on,
                    reason: reason.clone(),
                }])
            }
            Command::ReceiveInformation { on } => {
                self.require(name, &[Stage::InformationRequired], |_| {
                    "no information was requested".into()
                })?;
                Ok(vec![Event::InformationReceived { on: *on }])
            }
            _ => self.decide_outcome(command, catalog),
        }
    }

    /// Decision, appeal and withdrawal.
    fn decide_outcome(&self, command: &Command, catalog: &ChannelCatalog) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::Approve { on } => {
                self.require(name, &[Stage::UnderReview], |stage| match stage {
                    Stage::InformationRequired => "requested information is still awaited".into(),
                    _ => "no application is under review".into(),
                })?;
                Ok(vec![Event::Approved { on: *on }])
            }
            Command::Deny { on, reason } => {
                self.require(name, &[Stage::UnderReview, Stage::InformationRequired], |_| {
                    "no application is under review".into()
                })?;
                let rules = self.current_rules(name, catalog)?;
                let appeal_until = rules.appeal_until(*on);
                Ok(vec![Event::Denied {
                    on: *on,
                    reason: *reason,
                    appeal_until,
                }])
            }
            Command::FileAppeal { on } => {
                self.require(name, &[Stage::Denied], |_| "there is no denial to appeal".into())?;
                let denial = self.application.as_ref().and_then(|app| app.denial);
                if let Some(denial) = denial.filter(|denial| *on > denial.appeal_until) {
                    let reason = format!("the appeal window closed on {}", denial.appeal_until);
                    return Err(self.illegal(name, reason));
                }
                Ok(vec![Event::AppealFiled { on: *on }])
            }
            Command::DecideAppeal { on, upheld } => {
                self.require(name, &[Stage::AppealFiled], |_| "no appeal was filed".into())?;
                Ok(vec![Event::AppealDecided {
                    on: *on,
                    upheld: *upheld,
                }])
            }
            Command::Withdraw { on } => {
                self.require(name, &Stage::UNDECIDED, |_| {
                    "only an application not yet decided can be withdrawn".into()
                })?;
                Ok(vec![Event::Withdrawn { on: *on }])
            }
            _ => Err(self.illegal(name, "not an application command")),
        }
    }

    /// Opens an application, if none is in process and the channel admits it.
    fn pre_register(
        &self,
        name: &'static str,
        on: Date,
        channel: ChannelCode,
        basis: EligibilityBasis,
        catalog: &ChannelCatalog,
        linked: &LinkedCases,
    ) -> Result<Vec<Event>, Rejection> {
        if let Some(reason) = self.blocks_new_application(on) {
            return Err(self.illegal(name, reason));
        }
        let rules = catalog
            .get(channel)
            .ok_or_else(|| Rejection::invalid("channel", format!("unknown channel {channel}")))?;
        if !rules.accepts(basis) {
            return Err(Rejection::invalid(
                "basis",
                format!("{channel} does not accept basis {basis}"),
            ));
        }
        let age = self.age_on(on).unwrap_or(0);
        rules
            .check_window(on, age < ADULT_AGE_YEARS)
            .map_err(|reason| self.rule(name, "CHANNEL_WINDOW", "on", reason.to_string()))?;
        if rules.once_per_person && self.permit_channels.contains(&channel) {
            let reason = format!("a {channel} permit is granted once per person and was already held");
            return Err(self.rule(name, "ONCE_PER_PERSON", "channel", reason));
        }
        if self.applications >= APPLICATIONS_MAX {
            let reason = format!("a case holds at most {APPLICATIONS_MAX} applications");
            return Err(self.rule(name, "APPLICATIONS_MAX", "channel", reason));
        }
        if let Some(rule) = &rules.linked_permit {
            if !self.linked_permit_holder(rule, linked) {
                let reason = format!(
                    "{channel} needs an active {} link to a case whose person was a minor holding a {} on {}",
                    rule.role, rule.permit_type, rule.held_on
                );
                return Err(self.rule(name, rule.rule_code(), "basis", reason));
            }
        }
        let application_id = self.applications + 1;
        Ok(vec![Event::PreRegistered {
            application_id,
            channel,
            basis,
            applied_on: on,
        }])
    }

    fn schedule_biometrics(
        &self,
        name: &'static str,
        on: Date,
        appointment_on: Date,
        site: &str,
        catalog: &ChannelCatalog,
    ) -> Result<Vec<Event>, Rejection> {
        let allowed = [
            Stage::PreRegistered,
            Stage::BiometricsScheduled,
            Stage::AppointmentMissed,
        ];
        self.require(name, &allowed, |stage| match stage {
            Stage::UnderReview | Stage::InformationRequired => "biometrics were already captured".into(),
            _ => "no application awaits biometrics".into(),
        })?;
        let rules = self.current_rules(name, catalog)?;
        let missed = self.missed_appointments();
        if missed >= rules.missed_appointments_max {
            let reason = format!(
                "{missed} appointments were missed ({} allows {}); withdraw the application",
                rules.code, rules.missed_appointments_max
            );
            return Err(self.illegal(name, reason));
        }
        if appointment_on < on || appointment_on > on.add_days(APPOINTMENT_LEAD_DAYS_MAX) {
            let reason = format!("must be between {on} and {APPOINTMENT_LEAD_DAYS_MAX} days later");
            return Err(Rejection::invalid("appointment_on", reason));
        }
        require_code("site", site)?;
        Ok(vec![Event::BiometricAppointmentScheduled {
            on,
            appointment_on,
            site: site.to_owned(),
        }])
    }

    /// Why a new application cannot start on `on`, if it cannot: one is in
    /// process, or the person is regular (active permit, valid visa).
    pub(crate) fn blocks_new_application(&self, on: Date) -> Option<String> {
        if let Some(reason) = self.application_in_process(on) {
            return Some(reason);
        }
        match self.stage {
            stage if stage.is_in(&Stage::PERMIT_HELD) => {
                let permit = self.permit.as_ref().filter(|permit| permit.is_active_on(on))?;
                Some(format!(
                    "the person holds an active permit valid until {}",
                    permit.valid_until
                ))
            }
            Stage::SupersededByVisa => {
                let visa = self.visa.as_ref().filter(|visa| visa.is_valid_on(on))?;
                Some(match visa.valid_until {
                    Some(end) => format!("the person holds a visa valid until {end}"),
                    None => "the person holds a visa without end date".to_owned(),
                })
            }
            _ => None,
        }
    }

    /// Why an application counts as in process on `on`, if it does: not yet
    /// decided, approved but not issued, under appeal, or denied with the
    /// appeal window still open.
    pub(crate) fn application_in_process(&self, on: Date) -> Option<String> {
        let app_id = self.applications;
        match self.stage {
            Stage::Denied => {
                let until = self
                    .application
                    .as_ref()
                    .and_then(|app| app.denial)
                    .map(|d| d.appeal_until)?;
                (on <= until)
                    .then(|| format!("application {app_id} was denied and may be appealed until {until}"))
            }
            stage
                if stage.is_in(&Stage::UNDECIDED) || stage.is_in(&[Stage::Approved, Stage::AppealFiled]) =>
            {
                Some(format!("application {app_id} is in process"))
            }
            _ => None,
        }
    }
}
