//! Family links between cases: a guardian and the minor in their care, a
//! parent and a child, a visa holder and a dependant.
//!
//! A link is recorded on **both** cases, one `FamilyLinkRecorded` event each,
//! appended atomically by the case service: on the case named in the
//! request with the role asked for (`GUARDIAN_OF`), on the other case with
//! the inverse role (`WARD_OF`). Each event holds the link id, the role, the
//! other case's id and the evidence code, never a name or a document: no
//! personal data of one person enters the other's stream. A link is ended
//! (corrected, revoked) by `FamilyLinkEnded` on both cases, with a reason code.
//!
//! [`CaseState::decide_link`] decides a link command against both cases;
//! `decide` alone checks one side (what `next_steps` asks). Eligibility that
//! rests on a linked case (PEP-Tutor: the guardian of a minor who held a PPT
//! on 31 Dec 2023) is decided from the linked cases' events the case service
//! reads from the log and passes in ([`LinkedCases`]).

use super::case::CaseState;
use super::channels::LinkedPermitRule;
use super::command::Command;
use super::date::Date;
use super::error::Rejection;
use super::event::Event;
use super::person_status::person_status;
use super::types::{code_enum, ADULT_AGE_YEARS};

/// Most family links one case may record (ended ones included).
pub const FAMILY_LINKS_MAX: usize = crate::limits::FAMILY_LINKS_MAX;

code_enum! {
    /// What the person of this case is to the person of the other case.
    /// Requests name one of the first roles of each pair (`GUARDIAN_OF`,
    /// `PARENT_OF`, `DEPENDANT_OF`); the other case records the inverse.
    pub enum LinkRole {
        /// Legal guardian (representative) of the other person, a minor.
        GuardianOf => "GUARDIAN_OF",
        /// A minor in the other person's guardianship.
        WardOf => "WARD_OF",
        /// Mother or father of the other person.
        ParentOf => "PARENT_OF",
        /// Daughter or son of the other person.
        ChildOf => "CHILD_OF",
        /// A dependant (beneficiary) of the other person's visa or permit.
        DependantOf => "DEPENDANT_OF",
        /// Holder of the visa or permit the other person depends on.
        SponsorOf => "SPONSOR_OF",
    }
}

impl LinkRole {
    /// The role the other case records.
    pub const fn inverse(self) -> LinkRole {
        match self {
            LinkRole::GuardianOf => LinkRole::WardOf,
            LinkRole::WardOf => LinkRole::GuardianOf,
            LinkRole::ParentOf => LinkRole::ChildOf,
            LinkRole::ChildOf => LinkRole::ParentOf,
            LinkRole::DependantOf => LinkRole::SponsorOf,
            LinkRole::SponsorOf => LinkRole::DependantOf,
        }
    }

    /// Whether a request may name this role (the first of its pair).
    pub const fn is_requestable(self) -> bool {
        matches!(
            self,
            LinkRole::GuardianOf | LinkRole::ParentOf | LinkRole::DependantOf
        )
    }
}

code_enum! {
    /// The document that proves a link (a closed list: the evidence a
    /// caseworker may cite; the document itself stays with the case file).
    pub enum LinkEvidence {
        /// Colombian civil registry of birth (registro civil de nacimiento).
        CivilBirthRegistry => "REGISTRO_CIVIL_NACIMIENTO",
        /// A foreign birth certificate (Venezuelan acta de nacimiento), apostilled.
        ForeignBirthCertificate => "ACTA_NACIMIENTO_EXTRANJERA",
        /// A court order: custody, guardianship, filiation.
        CourtOrder => "SENTENCIA_JUDICIAL",
        /// An act of an ICBF family ombudsman (Defensor de Familia): custody,
        /// placement, restoration of rights.
        IcbfAct => "ACTA_ICBF",
        /// A conciliation act on custody (comisaría de familia, ICBF).
        ConciliationAct => "ACTA_CONCILIACION",
        /// A notarial deed (escritura pública): custody granted, marital union.
        NotarialDeed => "ESCRITURA_PUBLICA",
        /// Civil registry of marriage.
        MarriageRegistry => "REGISTRO_CIVIL_MATRIMONIO",
        /// Cancillería's record of a visa's beneficiary (Visa V dependants).
        VisaBeneficiary => "VISA_BENEFICIARIO",
    }
}

impl LinkEvidence {
    /// Whether this evidence can prove a link of `role` (either side of the pair).
    pub fn proves(self, role: LinkRole) -> bool {
        use LinkEvidence::*;
        match role {
            LinkRole::ParentOf | LinkRole::ChildOf => {
                matches!(self, CivilBirthRegistry | ForeignBirthCertificate | CourtOrder)
            }
            LinkRole::GuardianOf | LinkRole::WardOf => matches!(
                self,
                CivilBirthRegistry
                    | ForeignBirthCertificate
                    | CourtOrder
                    | IcbfAct
                    | ConciliationAct
                    | NotarialDeed
            ),
            LinkRole::DependantOf | LinkRole::SponsorOf => matches!(
                self,
                CivilBirthRegistry
                    | ForeignBirthCertificate
                    | CourtOrder
                    | NotarialDeed
                    | MarriageRegistry
                    | VisaBeneficiary
            ),
        }
    }
}

code_enum! {
    /// Why a link ended.
    pub enum LinkEndReason {
        /// The link should never have been recorded (wrong case, wrong role).
        RecordedInError => "RECORDED_IN_ERROR",
        /// The evidence was annulled or found false.
        EvidenceRevoked => "EVIDENCE_REVOKED",
        /// A court or ICBF decision ended the guardianship or custody.
        CourtOrder => "COURT_ORDER",
        /// The ward came of age.
        AgeOfMajority => "AGE_OF_MAJORITY",
        /// One of the two persons died.
        Death => "DEATH",
        /// The dependency (visa beneficiary, household) ended.
        DependencyEnded => "DEPENDENCY_ENDED",
    }
}

/// A link as one case holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyLink {
    /// The link's id, the same on both cases.
    pub link_id: String,
    /// What this case's person is to the other.
    pub role: LinkRole,
    /// The other case's id (nothing else of it).
    pub other_case_id: String,
    /// The evidence cited.
    pub evidence: LinkEvidence,
    /// Business date recorded.
    pub since: Date,
    /// When it ended, and why; `None` while active.
    pub ended: Option<(Date, LinkEndReason)>,
}

impl FamilyLink {
    /// Whether the link has not been ended.
    pub fn is_active(&self) -> bool {
        self.ended.is_none()
    }
}

/// The id of a link recorded by request `request_id` from `case_id`: `L-`
/// and 20 hex digits of a BLAKE3 hash, so a retry names the same link.
pub fn link_id_for_request(request_id: &str, case_id: &str) -> String {
    let h = blake3::Hasher::new()
        .update(b"migreg.link-id.v1\0")
        .update(case_id.as_bytes())
        .update(b"\0")
        .update(request_id.as_bytes())
        .finalize();
    format!("L-{}", crate::hex::encode(&h.as_bytes()[..10]))
}

/// Whether `text` has the form of a link id.
pub fn is_link_id(text: &str) -> bool {
    text.len() == 22
        && text.starts_with("L-")
        && text[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What `decide` knows of the cases linked to this one: their events, as
/// the case service read them from the log (for a retry, as they stood
/// before the original request). Only the cases a rule needs are loaded.
#[derive(Debug, Clone, Default)]
pub struct LinkedCases {
    /// (case id, its events in order).
    pub cases: Vec<(String, Vec<Event>)>,
}

impl LinkedCases {
    /// No linked case loaded.
    pub const NONE: LinkedCases = LinkedCases { cases: Vec::new() };
}

/// The state of a case as it stood on `on`: its events of business date on
/// or before `on` (a case's timeline only moves forward, so they are a prefix).
pub fn state_as_of(events: &[Event], on: Date) -> CaseState {
    CaseState::from_events(events.iter().take_while(|e| e.on() <= on))
}

impl CaseState {
    /// Every link this case recorded, in order (ended ones included).
    pub fn family_links(&self) -> &[FamilyLink] {
        &self.links
    }

    /// The active links.
    pub fn active_links(&self) -> impl Iterator<Item = &FamilyLink> {
        self.links.iter().filter(|l| l.is_active())
    }

    /// Whether an active link names this case the ward of someone.
    pub fn has_active_guardian(&self) -> bool {
        self.active_links().any(|l| l.role == LinkRole::WardOf)
    }

    /// Whether the person is a minor on `on`.
    fn minor_on(&self, on: Date) -> bool {
        self.age_on(on).is_some_and(|age| age < ADULT_AGE_YEARS)
    }

    /// The cases a rule needs loaded: those of active links of `role`.
    pub fn linked_case_ids(&self, role: LinkRole) -> Vec<String> {
        self.active_links()
            .filter(|l| l.role == role)
            .map(|l| l.other_case_id.clone())
            .collect()
    }

    /// Whether a linked case satisfies `rule`: an active link of its role to
    /// a case whose person was a minor on `held_on` and whose status on that
    /// date (its events up to then, the status rules of `status.rs`) was the
    /// one the permit type gives.
    pub(crate) fn linked_permit_holder(&self, rule: &LinkedPermitRule, linked: &LinkedCases) -> bool {
        self.active_links().filter(|l| l.role == rule.role).any(|l| {
            linked
                .cases
                .iter()
                .filter(|(id, _)| *id == l.other_case_id)
                .any(|(_, events)| {
                    let then = state_as_of(events, rule.held_on);
                    then.exists()
                        && then.minor_on(rule.held_on)
                        && person_status(&then, rule.held_on) == rule.permit_type.status()
                })
        })
    }

    /// This side of a link command (after `decide`'s existence, erasure,
    /// date and exit checks): the event this case records.
    pub(super) fn decide_family(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::RecordFamilyLink {
                on,
                link_id,
                role,
                other_case_id,
                evidence,
            } => {
                if !is_link_id(link_id) {
                    return Err(Rejection::invalid("link_id", "not a link id"));
                }
                if other_case_id.is_empty() {
                    return Err(Rejection::invalid("other_case_id", "required"));
                }
                if !evidence.proves(*role) {
                    let reason = format!("{evidence} does not prove a {role} link");
                    return Err(Rejection::invalid("evidence", reason));
                }
                if self.links.iter().any(|l| l.link_id == *link_id) {
                    return Err(Rejection::invalid("link_id", "already recorded on this case"));
                }
                if self
                    .active_links()
                    .any(|l| l.other_case_id == *other_case_id && l.role == *role)
                {
                    let reason = format!("an active {role} link to this case is already recorded");
                    return Err(self.rule(name, "FAMILY_LINK_DUPLICATE", "role", reason));
                }
                if self.links.len() >= FAMILY_LINKS_MAX {
                    let reason = format!("a case records at most {FAMILY_LINKS_MAX} family links");
                    return Err(self.rule(name, "FAMILY_LINKS_MAX", "role", reason));
                }
                // Guardians and sponsors are adults; wards are minors.
                let minor = self.minor_on(*on);
                match role {
                    LinkRole::GuardianOf | LinkRole::SponsorOf if minor => {
                        let reason = format!("a minor on {on} cannot be {role} another person");
                        return Err(self.rule(name, "FAMILY_LINK_AGE", "role", reason));
                    }
                    LinkRole::WardOf if !minor => {
                        let reason = format!("an adult on {on} cannot be a ward");
                        return Err(self.rule(name, "FAMILY_LINK_AGE", "role", reason));
                    }
                    _ => {}
                }
                Ok(vec![Event::FamilyLinkRecorded {
                    on: *on,
                    link_id: link_id.clone(),
                    role: *role,
                    other_case_id: other_case_id.clone(),
                    evidence: *evidence,
                }])
            }
            Command::EndFamilyLink { on, link_id, reason } => {
                let Some(link) = self.links.iter().find(|l| l.link_id == *link_id) else {
                    return Err(Rejection::invalid("link_id", "no such link on this case"));
                };
                if let Some((ended_on, why)) = link.ended {
                    let reason = format!("the link ended on {ended_on} ({why})");
                    return Err(self.rule(name, "FAMILY_LINK_ENDED", "link_id", reason));
                }
                Ok(vec![Event::FamilyLinkEnded {
                    on: *on,
                    link_id: link_id.clone(),
                    role: link.role,
                    reason: *reason,
                }])
            }
            _ => Err(self.illegal(name, "not a family link command")),
        }
    }

    /// Decides a link command against this case (`case_id`) and the other
    /// one (`other`, the case the command names, or the other end of the
    /// link being ended): the events each records (this case's first), or
    /// why not. Pure, like `decide`.
    pub fn decide_link(
        &self,
        case_id: &str,
        other: &CaseState,
        command: &Command,
        today: Date,
    ) -> Result<(Vec<Event>, Vec<Event>), Rejection> {
        let name = command.name();
        if let Command::RecordFamilyLink { other_case_id, .. } = command {
            if other_case_id == case_id {
                return Err(Rejection::invalid(
                    "other_case_id",
                    "a case cannot be linked to itself",
                ));
            }
        }
        let no_catalog = super::channels::ChannelCatalog::trusted(Vec::new());
        let mine = self.decide(command, today, &no_catalog)?;
        let on = command.on();
        // The other side: the same checks, refused naming `other_case_id`.
        let other_rule = |rule: &'static str, reason: String| self.rule(name, rule, "other_case_id", reason);
        if !other.exists() {
            return Err(Rejection::invalid("other_case_id", "no such case"));
        }
        let ending = matches!(command, Command::EndFamilyLink { .. });
        if let Some(erased_on) = other.erased_on.filter(|_| !ending) {
            let reason = format!("the other person's identifying data was erased on {erased_on}");
            return Err(other_rule("FAMILY_LINK_CASE_ERASED", reason));
        }
        if let Some(exit) = other.exit.filter(|_| !ending) {
            let reason = format!("the other person exited ({}) on {}", exit.kind, exit.on);
            return Err(other_rule("FAMILY_LINK_CASE_EXITED", reason));
        }
        if let Some(latest) = other.latest_on.filter(|latest| on < *latest) {
            let reason = format!("{on} is before the other case's latest recorded date {latest}");
            return Err(self.rule(name, "CASE_TIMELINE", "on", reason));
        }
        let theirs = match command {
            Command::RecordFamilyLink {
                on,
                link_id,
                role,
                evidence,
                ..
            } => {
                if let (Some(me), Some(them)) = (self.person.as_ref(), other.person.as_ref()) {
                    let (mine_born, theirs_born) = (
                        (me.birth_year, me.birth_month),
                        (them.birth_year, them.birth_month),
                    );
                    let parent_first = match role {
                        LinkRole::ParentOf => mine_born < theirs_born,
                        LinkRole::ChildOf => theirs_born < mine_born,
                        _ => true,
                    };
                    if !parent_first {
                        let reason = "a parent is born before the child".to_string();
                        return Err(self.rule(name, "FAMILY_LINK_AGE", "role", reason));
                    }
                }
                if other.links.iter().any(|l| l.link_id == *link_id) {
                    return Err(Rejection::invalid(
                        "link_id",
                        "already recorded on the other case",
                    ));
                }
                let inverse = Command::RecordFamilyLink {
                    on: *on,
                    link_id: link_id.clone(),
                    role: role.inverse(),
                    other_case_id: case_id.to_string(),
                    evidence: *evidence,
                };
                other
                    .decide_family(&inverse)
                    .map_err(|r| restate_for_other(self, name, r))?
            }
            Command::EndFamilyLink { on, link_id, reason } => {
                let role = match other.links.iter().find(|l| l.link_id == *link_id) {
                    Some(l) if l.is_active() && l.other_case_id == case_id => l.role,
                    _ => {
                        let reason = "the other case does not hold this link as active".to_string();
                        return Err(other_rule("FAMILY_LINK_ENDED", reason));
                    }
                };
                vec![Event::FamilyLinkEnded {
                    on: *on,
                    link_id: link_id.clone(),
                    role,
                    reason: *reason,
                }]
            }
            _ => return Err(self.illegal(name, "not a family link command")),
        };
        Ok((mine, theirs))
    }
}

/// A refusal of the other side, restated so that it names `other_case_id`.
fn restate_for_other(me: &CaseState, name: &'static str, r: Rejection) -> Rejection {
    match r {
        Rejection::RuleViolated { rule, reason, .. } => {
            me.rule(name, rule, "other_case_id", format!("the other case: {reason}"))
        }
        Rejection::Invalid { field, reason } => Rejection::Invalid {
            field,
            reason: format!("the other case: {reason}"),
        },
        other => other,
    }
}
