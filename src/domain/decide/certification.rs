//! Worker certification rules, one track per `certification_id`:
//!
//! ```text
//! RequestCertification (adults only) → CERTIFICATION_REQUESTED
//!   ─AssessCertification{passed}→ CERTIFICATION_ASSESSED_PASSED ─AwardCertification→ CERTIFICATION_AWARDED
//!   ─AssessCertification{failed}→ CERTIFICATION_ASSESSED_FAILED ─DenyCertification→ CERTIFICATION_DENIED
//!   CERTIFICATION_REQUESTED ─DenyCertification→ CERTIFICATION_DENIED
//! ```
//!
//! Certifications do not depend on the application or permit: a person with
//! a PEP or a cédula de extranjería may certify too. Rejections name the
//! certification's own state.

use super::require_code;
use crate::domain::case::CaseState;
use crate::domain::command::Command;
use crate::domain::error::Rejection;
use crate::domain::event::Event;
use crate::domain::records::{Certification, CertificationStage};
use crate::domain::types::ADULT_AGE_YEARS;

/// Most certifications one case may hold.
pub const CERTIFICATIONS_MAX: usize = 32;

impl CaseState {
    pub(super) fn decide_certification(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::RequestCertification { on, route, sector } => {
                let age = self.age_on(*on).unwrap_or(0);
                if age < ADULT_AGE_YEARS {
                    let reason = format!("the person is {age} on {on}; certifications are for adults (18+)");
                    return Err(self.rule(name, "ADULTS_ONLY", "on", reason));
                }
                if self.certifications.len() >= CERTIFICATIONS_MAX {
                    let reason = format!("a case holds at most {CERTIFICATIONS_MAX} certifications");
                    return Err(self.rule(name, "CERTIFICATIONS_MAX", "route", reason));
                }
                let certification_id = self.certifications.len() as u32 + 1;
                Ok(vec![Event::CertificationRequested {
                    certification_id,
                    on: *on,
                    route: *route,
                    sector: *sector,
                }])
            }
            Command::AssessCertification {
                certification_id,
                on,
                passed,
            } => {
                let cert = self.certification(*certification_id)?;
                require_cert(
                    name,
                    cert,
                    &[CertificationStage::Requested],
                    "it was already assessed",
                )?;
                let (certification_id, passed) = (*certification_id, *passed);
                Ok(vec![Event::CertificationAssessed {
                    certification_id,
                    on: *on,
                    passed,
                }])
            }
            Command::AwardCertification {
                certification_id,
                on,
                standard_code,
                issuing_body,
            } => {
                let cert = self.certification(*certification_id)?;
                let why = match cert.stage {
                    CertificationStage::Requested => "the certification was not assessed",
                    CertificationStage::AssessedFailed => "the assessment was failed",
                    _ => "the certification was already decided",
                };
                require_cert(name, cert, &[CertificationStage::AssessedPassed], why)?;
                require_code("standard_code", standard_code)?;
                require_code("issuing_body", issuing_body)?;
                Ok(vec![Event::CertificationAwarded {
                    certification_id: *certification_id,
                    on: *on,
                    standard_code: standard_code.clone(),
                    issuing_body: issuing_body.clone(),
                }])
            }
            Command::DenyCertification {
                certification_id,
                on,
                reason,
            } => {
                let cert = self.certification(*certification_id)?;
                let why = match cert.stage {
                    CertificationStage::AssessedPassed => "the assessment was passed; award it",
                    _ => "the certification was already decided",
                };
                let allowed = [CertificationStage::Requested, CertificationStage::AssessedFailed];
                require_cert(name, cert, &allowed, why)?;
                require_code("reason", reason)?;
                let (certification_id, reason) = (*certification_id, reason.clone());
                Ok(vec![Event::CertificationDenied {
                    certification_id,
                    on: *on,
                    reason,
                }])
            }
            _ => Err(self.illegal(name, "not a certification command")),
        }
    }

    fn certification(&self, id: u32) -> Result<&Certification, Rejection> {
        self.certifications
            .iter()
            .find(|cert| cert.id == id)
            .ok_or_else(|| {
                Rejection::invalid("certification_id", format!("no certification {id} in this case"))
            })
    }
}

/// Refuses unless the certification is in one of `allowed`, naming its state.
fn require_cert(
    command: &'static str,
    cert: &Certification,
    allowed: &[CertificationStage],
    why: &str,
) -> Result<(), Rejection> {
    if allowed.contains(&cert.stage) {
        return Ok(());
    }
    Err(Rejection::IllegalTransition {
        command,
        state: cert.stage.as_str(),
        reason: why.to_owned(),
    })
}
