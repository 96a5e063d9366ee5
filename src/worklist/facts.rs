//! What the worklists know about one case ([`WorkFacts`]), folded from its
//! events, and the index entries a case's facts put on the lists
//! ([`WorkFacts::entries`]).
//!
//! Codes and dates only: the case id, residence codes, the office of the
//! latest event, the appointment site, the stage and the dates that order
//! the lists. No names, documents or birth dates.

use crate::domain::{ChannelCatalog, ChannelCode, Date, Event, Stage};
use crate::limits::APPEAL_DECISION_MONTHS;

/// Declares [`Kind`] from its rows, `Name = wire value => "REPORT_NAME"`
/// (each after its doc comment): the enum, [`Kind::ALL`] (in row order)
/// and [`Kind::as_str`].
macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $value:literal => $text:literal,)*) => {
        /// The worklists. The discriminants are the wire values of `WorklistKind`
        /// and the second byte of every index key: never renumber.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Kind {
            $($(#[$doc])* $name = $value,)*
        }

        impl Kind {
            /// Every list, in wire order.
            pub const ALL: [Kind; [$($value),*].len()] = [$(Kind::$name),*];

            /// A short name for reports.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$name => $text,)*
                }
            }
        }
    };
}

kinds! {
    /// Biometrics appointments given, by appointment date.
    Appointments = 1 => "APPOINTMENTS",
    /// Appointments missed with no new one given, by the day the miss was recorded.
    MissedAppointments = 2 => "MISSED_APPOINTMENTS",
    /// Applications under review after the capture, by review start.
    AwaitingDecision = 3 => "AWAITING_DECISION",
    /// Applications under review past their channel's decision period, by decision date.
    DecisionOverdue = 4 => "DECISION_OVERDUE",
    /// Denials not yet appealed, by the last day to appeal.
    AppealableDenials = 5 => "APPEALABLE_DENIALS",
    /// Appeals filed and not decided, by filing date.
    AppealsAwaitingDecision = 6 => "APPEALS_AWAITING_DECISION",
    /// Cards printed and not delivered, by latest print.
    CardsAwaitingDelivery = 7 => "CARDS_AWAITING_DELIVERY",
    /// Undelivered cards of channels that abandon cards, by the first day
    /// they may be declared abandoned.
    CardsNearAbandonment = 8 => "CARDS_NEAR_ABANDONMENT",
    /// Interim certificates of cards still awaited, by end of validity.
    InterimExpiring = 9 => "INTERIM_EXPIRING",
    /// Permits held, by end of validity.
    PermitsExpiring = 10 => "PERMITS_EXPIRING",
    /// Skills certifications requested and not yet assessed, awarded or
    /// denied (one item each), by request date.
    CertificationsAwaitingAssessment = 11 => "CERTIFICATIONS_AWAITING_ASSESSMENT",
    /// Data subjects' requests not answered, by the last day to answer.
    SubjectRequestsDue = 12 => "SUBJECT_REQUESTS_DUE",
}

impl Kind {
    /// The list of a wire value, if any.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == v)
    }
}

/// Stages in which the card is still awaited, so an interim certificate
/// matters (the domain's `AWAITING_CARD`).
pub(crate) const AWAITING_CARD: [Stage; 4] = [
    Stage::Approved,
    Stage::PermitIssued,
    Stage::CardPrinted,
    Stage::DuplicateRequested,
];

/// What the worklists know about one case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkFacts {
    /// The case id (the stream id).
    pub case_id: String,
    /// A `PersonRegistered` was applied.
    pub registered: bool,
    /// The person left the caseload.
    pub exited: bool,
    /// The person's identifying data was erased.
    pub erased: bool,
    /// DIVIPOLA department of residence (0 before registration).
    pub department: u8,
    /// DIVIPOLA municipality of residence.
    pub municipality: u32,
    /// Office of the actor of the latest case event.
    pub office: String,
    /// The application stage.
    pub stage: Stage,
    /// Channel of the current application.
    pub channel: Option<ChannelCode>,
    /// Latest appointment: when it was given, its date, its site.
    pub scheduled_on: Option<Date>,
    /// The latest appointment's date.
    pub appointment_on: Option<Date>,
    /// The latest appointment's site.
    pub site: String,
    /// When the latest miss was recorded.
    pub missed_on: Option<Date>,
    /// Review start (biometric capture) and the legal decision date.
    pub review_since: Option<Date>,
    /// The date the application should be decided by.
    pub decision_due: Option<Date>,
    /// The denial and its appeal deadline.
    pub denied_on: Option<Date>,
    /// The denial's appeal deadline.
    pub appeal_until: Option<Date>,
    /// When an appeal of the denial was filed.
    pub appeal_filed_on: Option<Date>,
    /// Interim certificate: last issue or extension, end of validity.
    pub interim_since: Option<Date>,
    /// The interim certificate's end of validity.
    pub interim_until: Option<Date>,
    /// Latest permit: issue or last extension, end of validity.
    pub permit_since: Option<Date>,
    /// The latest permit's end of validity.
    pub permit_until: Option<Date>,
    /// Latest print (or duplicate), and the day the card may be declared abandoned.
    pub printed_on: Option<Date>,
    /// The day the printed card may be declared abandoned.
    pub abandon_on: Option<Date>,
    /// Certifications awaiting assessment: (id, request date).
    pub certifications: Vec<(u32, Date)>,
    /// Open data subject requests (Ley 1581): (id, received, due).
    pub subject_requests: Vec<(u32, Date, Date)>,
}

/// One entry a case puts on one list (the key's date and certification,
/// and the value's dates; the rest of the item comes from the facts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The list.
    pub kind: Kind,
    /// The list date (orders the list).
    pub date: Date,
    /// The certification (certification list) or the subject request
    /// (subject request list); 0 on the other lists.
    pub certification: u32,
    /// The item's due date, where the list has one.
    pub due_on: Option<Date>,
    /// The date the item's state began (review start, issue...), where the list has one.
    pub since: Option<Date>,
    /// Whether the item shows the appointment site.
    pub with_site: bool,
}

impl WorkFacts {
    /// Facts of a stream with no event applied yet.
    pub fn new(case_id: &str) -> WorkFacts {
        WorkFacts {
            case_id: case_id.to_string(),
            ..WorkFacts::default()
        }
    }

    /// Folds one event recorded by `office`. Periods a channel sets
    /// (decision days, card abandonment) are read from `catalog` when the
    /// event that starts them is applied.
    pub fn apply(&mut self, event: &Event, office: &str, catalog: &ChannelCatalog) {
        self.stage = self.stage.after(event);
        if self.office != office {
            self.office = office.to_string();
        }
        let rules = |channel: Option<ChannelCode>| channel.and_then(|c| catalog.get(c));
        match *event {
            Event::PersonRegistered {
                department,
                municipality,
                ..
            }
            | Event::ResidenceUpdated {
                department,
                municipality,
                ..
            } => {
                self.registered |= matches!(event, Event::PersonRegistered { .. });
                self.department = department.code();
                self.municipality = municipality.code();
            }
            Event::ExitRecorded { .. } => self.exited = true,
            Event::PersonErased { .. } => self.erased = true,
            Event::PreRegistered { channel, .. } => {
                // A new application: its own appointment, review, decision
                // and interim certificate (the permit is the person's).
                self.channel = Some(channel);
                self.scheduled_on = None;
                self.appointment_on = None;
                self.site.clear();
                self.missed_on = None;
                self.review_since = None;
                self.decision_due = None;
                self.denied_on = None;
                self.appeal_until = None;
                self.appeal_filed_on = None;
                self.interim_since = None;
                self.interim_until = None;
            }
            Event::BiometricAppointmentScheduled {
                on,
                appointment_on,
                ref site,
            } => {
                self.scheduled_on = Some(on);
                self.appointment_on = Some(appointment_on);
                self.site.clone_from(site);
            }
            Event::BiometricAppointmentMissed { on } => self.missed_on = Some(on),
            Event::BiometricsCaptured { on, .. } => {
                self.review_since = Some(on);
                self.decision_due = rules(self.channel).and_then(|r| r.decision_due(on));
            }
            Event::Denied { on, appeal_until, .. } => {
                self.denied_on = Some(on);
                self.appeal_until = Some(appeal_until);
            }
            Event::AppealFiled { on } => self.appeal_filed_on = Some(on),
            Event::InterimCertificateIssued { on, valid_until }
            | Event::InterimCertificateExtended { on, valid_until } => {
                self.interim_since = Some(on);
                self.interim_until = Some(valid_until);
            }
            Event::PermitIssued { on, valid_until, .. } | Event::ValidityExtended { on, valid_until } => {
                self.permit_since = Some(on);
                self.permit_until = Some(valid_until);
                if matches!(event, Event::PermitIssued { .. }) {
                    self.printed_on = None;
                    self.abandon_on = None;
                }
            }
            Event::CardPrinted { on } | Event::DuplicateIssued { on } => {
                self.printed_on = Some(on);
                self.abandon_on = rules(self.channel)
                    .and_then(|r| r.card_uncollected_days)
                    .map(|days| on.add_days(i64::from(days)));
            }
            Event::CertificationRequested {
                certification_id, on, ..
            } => {
                self.certifications.retain(|(id, _)| *id != certification_id);
                self.certifications.push((certification_id, on));
            }
            Event::CertificationAssessed { certification_id, .. }
            | Event::CertificationAwarded { certification_id, .. }
            | Event::CertificationDenied { certification_id, .. } => {
                self.certifications.retain(|(id, _)| *id != certification_id);
            }
            Event::SubjectRequestReceived {
                subject_request_id,
                on,
                due_on,
                ..
            } => {
                self.subject_requests.retain(|(id, ..)| *id != subject_request_id);
                self.subject_requests.push((subject_request_id, on, due_on));
            }
            Event::SubjectRequestExtended {
                subject_request_id,
                due_on,
                ..
            } => {
                if let Some(r) = self
                    .subject_requests
                    .iter_mut()
                    .find(|r| r.0 == subject_request_id)
                {
                    r.2 = due_on;
                }
            }
            Event::SubjectRequestAnswered {
                subject_request_id, ..
            } => {
                self.subject_requests.retain(|(id, ..)| *id != subject_request_id);
            }
            _ => {}
        }
    }

    /// The entries the case puts on the lists, under `policy` (general
    /// measures extend interim certificates: the list date is the derived
    /// validity, the facts keep the recorded one): once the person exited or
    /// was erased only their open subject requests (the legal deadline of
    /// an answer runs whatever became of the case); nothing else is left to
    /// act on, and an erased case has no one to call.
    pub fn entries(&self, policy: &crate::domain::PolicyBook) -> Vec<Entry> {
        let mut out = Vec::new();
        if !self.registered {
            return out;
        }
        for &(id, received, due) in &self.subject_requests {
            out.push(Entry {
                kind: Kind::SubjectRequestsDue,
                date: due,
                certification: id,
                due_on: Some(due),
                since: Some(received),
                with_site: false,
            });
        }
        if self.exited || self.erased {
            return out;
        }
        let mut push = |kind, date: Option<Date>, due_on, since, with_site| {
            if let Some(date) = date {
                out.push(Entry {
                    kind,
                    date,
                    certification: 0,
                    due_on,
                    since,
                    with_site,
                });
            }
        };
        match self.stage {
            Stage::BiometricsScheduled => {
                push(
                    Kind::Appointments,
                    self.appointment_on,
                    None,
                    self.scheduled_on,
                    true,
                );
            }
            Stage::AppointmentMissed => {
                push(
                    Kind::MissedAppointments,
                    self.missed_on,
                    None,
                    self.missed_on,
                    true,
                );
            }
            Stage::UnderReview | Stage::InformationRequired => {
                let (since, due) = (self.review_since, self.decision_due);
                push(Kind::AwaitingDecision, since, due, since, false);
                push(Kind::DecisionOverdue, due, due, since, false);
            }
            Stage::Denied => {
                let due = self.appeal_until;
                push(Kind::AppealableDenials, due, due, self.denied_on, false);
            }
            Stage::AppealFiled => {
                let filed = self.appeal_filed_on;
                let due = filed.map(|d| d.add_months(APPEAL_DECISION_MONTHS));
                push(Kind::AppealsAwaitingDecision, filed, due, filed, false);
            }
            Stage::CardPrinted => {
                let (printed, due) = (self.printed_on, self.abandon_on);
                push(Kind::CardsAwaitingDelivery, printed, due, printed, false);
                push(Kind::CardsNearAbandonment, due, due, printed, false);
            }
            _ => {}
        }
        if self.stage.is_in(&AWAITING_CARD) {
            let until = match (self.interim_until, self.channel) {
                (Some(recorded), Some(channel)) => Some(
                    policy
                        .interim_validity(channel, recorded, policy.version())
                        .valid_until,
                ),
                (recorded, _) => recorded,
            };
            push(Kind::InterimExpiring, until, until, self.interim_since, false);
        }
        if self.stage.is_in(&Stage::PERMIT_HELD) {
            let until = self.permit_until;
            push(Kind::PermitsExpiring, until, until, self.permit_since, false);
        }
        for &(id, on) in &self.certifications {
            out.push(Entry {
                kind: Kind::CertificationsAwaitingAssessment,
                date: on,
                certification: id,
                due_on: None,
                since: Some(on),
                with_site: false,
            });
        }
        out
    }

    /// The stored form (format version 2: version 1 followed by the open
    /// subject requests).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(96 + self.case_id.len()));
        w.u8(2);
        w.str(&self.case_id);
        w.u8(u8::from(self.registered) | u8::from(self.exited) << 1 | u8::from(self.erased) << 2);
        w.u8(self.department);
        w.u32(self.municipality);
        w.str(&self.office);
        w.u8(self.stage as u8);
        w.str(self.channel.as_ref().map_or("", |c| c.as_str()));
        w.str(&self.site);
        for d in [
            self.scheduled_on,
            self.appointment_on,
            self.missed_on,
            self.review_since,
            self.decision_due,
            self.denied_on,
            self.appeal_until,
            self.appeal_filed_on,
            self.interim_since,
            self.interim_until,
            self.permit_since,
            self.permit_until,
            self.printed_on,
            self.abandon_on,
        ] {
            w.date(d);
        }
        w.u32(self.certifications.len() as u32);
        for &(id, on) in &self.certifications {
            w.u32(id);
            w.date(Some(on));
        }
        w.u32(self.subject_requests.len() as u32);
        for &(id, received, due) in &self.subject_requests {
            w.u32(id);
            w.date(Some(received));
            w.date(Some(due));
        }
        w.0
    }

    /// Reads [`WorkFacts::encode`]'s output (format 2, or format 1 written
    /// before subject requests existed); `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<WorkFacts> {
        let mut r = Reader(bytes);
        let format = r.u8()?;
        if format != 1 && format != 2 {
            return None;
        }
        let case_id = r.str()?;
        let flags = r.u8()?;
        let department = r.u8()?;
        let municipality = r.u32()?;
        let office = r.str()?;
        let stage = *Stage::ALL.get(usize::from(r.u8()?))?;
        let channel = match r.str()? {
            c if c.is_empty() => None,
            c => Some(ChannelCode::parse(&c)?),
        };
        let site = r.str()?;
        let mut d = [None; 14];
        for slot in &mut d {
            *slot = r.date()?;
        }
        let n = r.u32()? as usize;
        let mut certifications = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            certifications.push((r.u32()?, r.date()??));
        }
        let mut subject_requests = Vec::new();
        if format == 2 {
            let n = r.u32()? as usize;
            subject_requests.reserve(n.min(crate::domain::SUBJECT_REQUESTS_MAX));
            for _ in 0..n {
                subject_requests.push((r.u32()?, r.date()??, r.date()??));
            }
        }
        r.0.is_empty().then_some(WorkFacts {
            case_id,
            registered: flags & 1 != 0,
            exited: flags & 2 != 0,
            erased: flags & 4 != 0,
            department,
            municipality,
            office,
            stage,
            channel,
            scheduled_on: d[0],
            appointment_on: d[1],
            site,
            missed_on: d[2],
            review_since: d[3],
            decision_due: d[4],
            denied_on: d[5],
            appeal_until: d[6],
            appeal_filed_on: d[7],
            interim_since: d[8],
            interim_until: d[9],
            permit_since: d[10],
            permit_until: d[11],
            printed_on: d[12],
            abandon_on: d[13],
            certifications,
            subject_requests,
        })
    }
}

/// Appends the stored encodings (big-endian integers, dates as year u16,
/// month, day with zeros for none, strings with a one-byte length).
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn date(&mut self, d: Option<Date>) {
        self.0
            .extend_from_slice(&d.map_or([0; 4], crate::projection::facts::date_bytes));
    }
    /// Codes are at most 64 bytes (`ACTOR_FIELD_BYTES_MAX`, `CODE_BYTES_MAX`,
    /// stream ids 128): longer is cut at 255 bytes, never wrapped.
    pub fn str(&mut self, s: &str) {
        let mut end = s.len().min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push(end as u8);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
    }
}

/// Reads what [`Writer`] wrote; every method is `None` past the end.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// `Some(None)` for the zero date, `None` for a bad one.
    pub fn date(&mut self) -> Option<Option<Date>> {
        let b = self.take(4)?;
        if b == [0; 4] {
            return Some(None);
        }
        crate::projection::facts::date_from(b).map(Some)
    }
    pub fn str(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}
