//! Permit and card rules: issue, print, deliver, abandon, interim
//! certificates, duplicates, extension, cancellation, visa.
//!
//! ```text
//! APPROVED ─IssuePermit→ PERMIT_ISSUED ─PrintCard→ CARD_PRINTED ─DeliverCard→ CARD_DELIVERED
//!   CARD_PRINTED ─AbandonCard→ PERMIT_CANCELLED   (CardAbandoned + PermitCancelled{UNCOLLECTED_CARD})
//!   CARD_DELIVERED ─RequestDuplicate→ DUPLICATE_REQUESTED ─IssueDuplicate→ CARD_PRINTED
//!   active permit ─CancelPermit→ PERMIT_CANCELLED      ─SupersedeByVisa→ SUPERSEDED_BY_VISA
//!   interim certificates: APPROVED .. CARD_PRINTED, DUPLICATE_REQUESTED (card channels only)
//! ```

use super::{channel_rules, check_sealed};
use crate::domain::case::{CaseState, Stage};
use crate::domain::channels::{ChannelCatalog, ChannelRules};
use crate::domain::command::Command;
use crate::domain::date::Date;
use crate::domain::error::Rejection;
use crate::domain::event::Event;
use crate::domain::records::Permit;
use crate::domain::types::CancellationGround;

/// Most duplicates one permit may receive.
pub const DUPLICATES_MAX: u8 = 20;
/// Most extensions one interim certificate may receive.
pub const INTERIM_EXTENSIONS_MAX: u8 = 12;

/// Stages in which the card is still awaited (interim certificates apply).
const AWAITING_CARD: [Stage; 4] = [
    Stage::Approved,
    Stage::PermitIssued,
    Stage::CardPrinted,
    Stage::DuplicateRequested,
];

impl CaseState {
    pub(super) fn decide_permit(
        &self,
        command: &Command,
        catalog: &ChannelCatalog,
    ) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::IssuePermit {
                on,
                permit_number,
                valid_until,
            } => {
                self.require(name, &[Stage::Approved], |stage| match stage {
                    s if s.is_in(&Stage::PERMIT_HELD) => "a permit was already issued".into(),
                    Stage::Denied | Stage::DeniedFinal => "the application was denied".into(),
                    _ => "the application is not approved".into(),
                })?;
                let rules = self.current_rules(name, catalog)?;
                check_sealed("permit_number", permit_number)?;
                let default = rules.default_valid_until(*on);
                if default <= *on {
                    let reason = format!("{} permits end on {default}", rules.code);
                    return Err(self.rule(name, "CHANNEL_PERMITS_ENDED", "on", reason));
                }
                let valid_until = issue_validity(rules, *on, *valid_until)?;
                let permit_number = permit_number.clone();
                let permit_type = rules.permit_type;
                Ok(vec![Event::PermitIssued {
                    on: *on,
                    permit_type,
                    permit_number,
                    valid_until,
                }])
            }
            Command::PrintCard { on } => {
                self.require(name, &[Stage::PermitIssued], |stage| match stage {
                    Stage::CardPrinted => "the card was already printed".into(),
                    Stage::CardDelivered => "the card was already delivered".into(),
                    Stage::DuplicateRequested => "a duplicate is printed by IssueDuplicate".into(),
                    _ => "no permit awaits its card".into(),
                })?;
                let rules = self.current_rules(name, catalog)?;
                if !rules.physical_card {
                    return Err(self.illegal(name, format!("{} permits have no card", rules.code)));
                }
                Ok(vec![Event::CardPrinted { on: *on }])
            }
            Command::DeliverCard { on } => {
                self.require(name, &[Stage::CardPrinted], |stage| match stage {
                    Stage::PermitIssued => "the card was never printed".into(),
                    Stage::CardDelivered => "the card was already delivered".into(),
                    Stage::DuplicateRequested => "the duplicate was not issued yet".into(),
                    _ => "no card awaits delivery".into(),
                })?;
                Ok(vec![Event::CardDelivered { on: *on }])
            }
            Command::AbandonCard { on } => self.abandon_card(name, *on, catalog),
            Command::IssueInterimCertificate { on, valid_until } => {
                let max_days = self.interim_rules(name, catalog)?;
                if let Some(interim) = self.interim_certificate().filter(|i| i.valid_until >= *on) {
                    let reason = format!(
                        "an interim certificate valid until {} exists; extend it",
                        interim.valid_until
                    );
                    return Err(self.illegal(name, reason));
                }
                check_interim_end(*on, *valid_until, *on, max_days)?;
                Ok(vec![Event::InterimCertificateIssued {
                    on: *on,
                    valid_until: *valid_until,
                }])
            }
            Command::ExtendInterimCertificate { on, valid_until } => {
                let max_days = self.interim_rules(name, catalog)?;
                let Some(interim) = self.interim_certificate() else {
                    return Err(self.illegal(name, "no interim certificate was issued"));
                };
                if interim.extensions >= INTERIM_EXTENSIONS_MAX {
                    let reason = format!("already extended {} times", interim.extensions);
                    return Err(self.illegal(name, reason));
                }
                check_interim_end(*on, *valid_until, interim.valid_until, max_days)?;
                Ok(vec![Event::InterimCertificateExtended {
                    on: *on,
                    valid_until: *valid_until,
                }])
            }
            Command::RequestDuplicate { on, cause } => {
                self.require(name, &[Stage::CardDelivered], |stage| match stage {
                    Stage::DuplicateRequested => "a duplicate was already requested".into(),
                    Stage::PermitIssued | Stage::CardPrinted => "the card was not delivered yet".into(),
                    _ => "no card was delivered".into(),
                })?;
                self.active_permit(name, *on)?;
                Ok(vec![Event::DuplicateRequested {
                    on: *on,
                    cause: *cause,
                }])
            }
            Command::IssueDuplicate { on } => {
                self.require(name, &[Stage::DuplicateRequested], |_| {
                    "no duplicate was requested".into()
                })?;
                if self.duplicates() >= DUPLICATES_MAX {
                    return Err(
                        self.illegal(name, format!("{DUPLICATES_MAX} duplicates were already issued"))
                    );
                }
                Ok(vec![Event::DuplicateIssued { on: *on }])
            }
            Command::ExtendValidity { on, valid_until } => {
                self.extend_validity(name, *on, *valid_until, catalog)
            }
            Command::CancelPermit { on, ground } => {
                self.active_permit(name, *on)?;
                if *ground == CancellationGround::UncollectedCard {
                    return Err(Rejection::invalid(
                        "ground",
                        "an uncollected card is declared through AbandonCard",
                    ));
                }
                Ok(vec![Event::PermitCancelled {
                    on: *on,
                    ground: *ground,
                }])
            }
            Command::SupersedeByVisa {
                on,
                visa_number,
                valid_until,
            } => {
                if let Some(reason) = self.application_in_process(*on) {
                    return Err(self.illegal(name, format!("{reason}; decide or withdraw it first")));
                }
                check_sealed("visa_number", visa_number)?;
                if let Some(end) = valid_until.filter(|end| end <= on) {
                    return Err(Rejection::invalid(
                        "valid_until",
                        format!("{end} is not after {on}"),
                    ));
                }
                let (visa_number, valid_until) = (visa_number.clone(), *valid_until);
                Ok(vec![Event::SupersededByVisa {
                    on: *on,
                    visa_number,
                    valid_until,
                }])
            }
            _ => Err(self.illegal(name, "not a permit command")),
        }
    }

    fn extend_validity(
        &self,
        name: &'static str,
        on: Date,
        valid_until: Date,
        catalog: &ChannelCatalog,
    ) -> Result<Vec<Event>, Rejection> {
        let permit = self.active_permit(name, on)?;
        let rules = channel_rules(catalog, permit.channel)?;
        if !rules.extendable {
            return Err(self.illegal(name, format!("{} permits are not extendable", rules.code)));
        }
        if permit.extensions >= rules.extensions_max {
            let reason = format!(
                "already extended {} times ({} allows {})",
                permit.extensions, rules.code, rules.extensions_max
            );
            return Err(self.illegal(name, reason));
        }
        if valid_until <= permit.valid_until {
            let reason = format!("must be after the current end {}", permit.valid_until);
            return Err(Rejection::invalid("valid_until", reason));
        }
        let limit = rules.extension_limit(permit.valid_until);
        if valid_until > limit {
            return Err(Rejection::invalid(
                "valid_until",
                format!("one extension reaches {limit} at most"),
            ));
        }
        Ok(vec![Event::ValidityExtended { on, valid_until }])
    }

    fn abandon_card(
        &self,
        name: &'static str,
        on: Date,
        catalog: &ChannelCatalog,
    ) -> Result<Vec<Event>, Rejection> {
        self.require(name, &[Stage::CardPrinted], |stage| match stage {
            Stage::PermitIssued => "the card was never printed".into(),
            Stage::CardDelivered => "the card was delivered".into(),
            _ => "no card awaits collection".into(),
        })?;
        let rules = self.current_rules(name, catalog)?;
        let Some(days) = rules.card_uncollected_days else {
            return Err(self.illegal(name, format!("{} cards are never declared abandoned", rules.code)));
        };
        let printed_on = self.permit.as_ref().and_then(|permit| permit.last_printed_on);
        if let Some(printed_on) = printed_on {
            let from = printed_on.add_days(i64::from(days));
            if on < from {
                let reason =
                    format!("the card was printed on {printed_on}; it may be declared abandoned from {from}");
                return Err(self.rule(name, "CARD_COLLECTION_PERIOD", "on", reason));
            }
        }
        Ok(vec![
            Event::CardAbandoned { on },
            Event::PermitCancelled {
                on,
                ground: CancellationGround::UncollectedCard,
            },
        ])
    }

    /// The permit, if held and active on `on`; otherwise why not.
    fn active_permit(&self, name: &'static str, on: Date) -> Result<&Permit, Rejection> {
        self.require(name, &Stage::PERMIT_HELD, |stage| match stage {
            Stage::PermitCancelled => "the permit was cancelled".into(),
            Stage::SupersededByVisa => "the permit was superseded by a visa".into(),
            _ => "no permit is held".into(),
        })?;
        let Some(permit) = &self.permit else {
            return Err(self.illegal(name, "no permit is held"));
        };
        if !permit.is_active_on(on) {
            return Err(self.illegal(name, format!("the permit expired on {}", permit.valid_until)));
        }
        Ok(permit)
    }

    /// Checks an interim certificate may be issued or extended now, and
    /// returns the channel's longest interim validity in days.
    fn interim_rules(&self, name: &'static str, catalog: &ChannelCatalog) -> Result<u16, Rejection> {
        self.require(name, &AWAITING_CARD, |stage| match stage {
            Stage::CardDelivered => "the card was already delivered".into(),
            _ => "no approved application awaits its card".into(),
        })?;
        let rules = self.current_rules(name, catalog)?;
        rules
            .interim_days_max
            .ok_or_else(|| self.illegal(name, format!("{} issues no interim certificates", rules.code)))
    }
}

/// The validity of a new permit (the channel's permits have not ended on
/// `on`): the channel default, or an earlier date.
fn issue_validity(rules: &ChannelRules, on: Date, requested: Option<Date>) -> Result<Date, Rejection> {
    let default = rules.default_valid_until(on);
    match requested {
        None => Ok(default),
        Some(end) if end <= on => Err(Rejection::invalid(
            "valid_until",
            format!("{end} is not after the issue date {on}"),
        )),
        Some(end) if end > default => Err(Rejection::invalid(
            "valid_until",
            format!("{end} is beyond {}'s validity end {default}", rules.code),
        )),
        Some(end) => Ok(end),
    }
}

/// An interim end must be after `after` and within `max_days` of `on`.
fn check_interim_end(on: Date, end: Date, after: Date, max_days: u16) -> Result<(), Rejection> {
    if end <= after {
        return Err(Rejection::invalid(
            "valid_until",
            format!("{end} is not after {after}"),
        ));
    }
    let limit = on.add_days(i64::from(max_days));
    if end > limit {
        return Err(Rejection::invalid(
            "valid_until",
            format!("an interim certificate lasts until {limit} at most"),
        ));
    }
    Ok(())
}
