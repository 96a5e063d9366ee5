//! `CaseFacts`: the compact, non-identifying facts statistics need about one
//! case, folded from its events by mirroring the parts of
//! `CaseState::apply` that statistics read.
//!
//! The mirror is checked by a property test (`facts_agree_with_case_state`):
//! for random event histories, `facts.status_on(d)` equals
//! `person_status(&CaseState::from_events(..), d)` and every breakdown field
//! agrees with the state's accessors.
//!
//! No heap, no personal data: codes, dates and flags only (about 72 bytes in memory,
//! [`FACTS_BYTES`] when stored).

use crate::domain::{
    age_on, AgeBand, ChannelCode, CountryCode, Date, Event, ExitKind, LinkRole, Municipality, PermitType,
    PersonStatus, Sex, Stage,
};

/// Bytes of one stored [`CaseFacts`].
pub const FACTS_BYTES: usize = 55;

/// What statistics know about one case. `Default` is the empty stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaseFacts {
    /// A `PersonRegistered` was applied (only such cases are counted).
    pub registered: bool,
    /// Sex recorded at registration.
    pub sex: Sex,
    /// Year of birth (for age bands on the date asked).
    pub birth_year: u16,
    /// Month of birth, 1..=12.
    pub birth_month: u8,
    /// Municipality of residence as its DIVIPOLA code (0: none; see
    /// [`CaseFacts::municipality`]).
    pub municipality_code: u32,
    /// The application stage (as `CaseState::stage`).
    pub stage: Stage,
    /// Channel of the current application (meaningful when `has_app`; see
    /// [`CaseFacts::channel`]).
    pub channel_code: ChannelCode,
    /// Whether a current application exists, and its id.
    pub has_app: bool,
    /// The current application's id (0: none).
    pub app_id: u32,
    /// Funnel flags of the current application.
    pub biometrics: bool,
    /// The current application was approved.
    pub approved: bool,
    /// Appeal deadline of the current application's denial.
    pub appeal_until: Option<Date>,
    /// The latest permit: type, the application it came from, validity end.
    pub permit_type: Option<PermitType>,
    /// The application the latest permit came from.
    pub permit_app_id: u32,
    /// The latest permit's validity end.
    pub permit_valid_until: Date,
    /// The latest permit was cancelled.
    pub permit_cancelled: bool,
    /// The latest permit was superseded by a visa.
    pub permit_superseded: bool,
    /// The latest permit's card was printed.
    pub permit_printed: bool,
    /// The latest permit's card was delivered.
    pub permit_delivered: bool,
    /// A visa: `Some(None)` is a visa without end.
    pub visa: Option<Option<Date>>,
    /// How the person left the caseload, once recorded.
    pub exit: Option<ExitKind>,
    /// The person's identifying data was erased.
    pub erased: bool,
    /// Nationality recorded at registration as [`country_value`] (0: none,
    /// before a registration; see [`CaseFacts::nationality`]).
    pub nationality_code: u16,
    /// Destination recorded with the exit as [`country_value`] (0: not
    /// recorded, or no exit; see [`CaseFacts::exit_destination`]).
    pub exit_destination_code: u16,
    /// Active family links naming this person the ward of a guardian
    /// (`WARD_OF`), from this case's own link events (saturating).
    pub guardians: u8,
}

/// A country code in two bytes: 0 for none, else 1 + its three letters
/// (`A` = 0) packed 5 bits each (so the order of the values is the order of
/// the codes).
pub fn country_value(n: Option<CountryCode>) -> u16 {
    n.map_or(0, |c| {
        1 + c
            .as_str()
            .bytes()
            .fold(0u16, |v, b| v << 5 | u16::from(b.saturating_sub(b'A') & 0x1f))
    })
}

/// The country of a [`country_value`] (`None` for 0 and values out of range).
pub fn country_of(v: u16) -> Option<CountryCode> {
    let v = v.checked_sub(1).filter(|v| *v < 1 << 15)?;
    let letters: String = [10u16, 5, 0]
        .iter()
        .map(|s| char::from(b'A' + ((v >> s) & 0x1f) as u8))
        .collect();
    CountryCode::from_log(&letters)
}

impl Default for CaseFacts {
    fn default() -> Self {
        CaseFacts {
            registered: false,
            sex: Sex::Unspecified,
            birth_year: 0,
            birth_month: 1,
            municipality_code: 0,
            stage: Stage::Registered,
            channel_code: ChannelCode::UNKNOWN,
            has_app: false,
            app_id: 0,
            biometrics: false,
            approved: false,
            appeal_until: None,
            permit_type: None,
            permit_app_id: 0,
            permit_valid_until: Date::MIN,
            permit_cancelled: false,
            permit_superseded: false,
            permit_printed: false,
            permit_delivered: false,
            visa: None,
            exit: None,
            erased: false,
            nationality_code: 0,
            exit_destination_code: 0,
            guardians: 0,
        }
    }
}

/// Funnel milestones reached by the current application (bit set).
pub mod funnel {
    /// The case has a current application (set for every one).
    pub const PRE_REGISTERED: u8 = 1;
    /// Its biometrics were captured.
    pub const BIOMETRICS: u8 = 2;
    /// It was approved, directly or on appeal.
    pub const APPROVED: u8 = 4;
    /// The permit issued on it was printed.
    pub const PRINTED: u8 = 8;
    /// The permit issued on it was delivered.
    pub const DELIVERED: u8 = 16;
    /// Step names in order.
    pub const STEPS: [(&str, u8); 5] = [
        ("PRE_REGISTERED", PRE_REGISTERED),
        ("BIOMETRICS", BIOMETRICS),
        ("APPROVED", APPROVED),
        ("PRINTED", PRINTED),
        ("DELIVERED", DELIVERED),
    ];
}

impl CaseFacts {
    /// Folds one event (mirror of `CaseState::apply`, statistics part only).
    pub fn apply(&mut self, event: &Event) {
        self.stage = self.stage.after(event);
        let has_permit = self.permit_type.is_some();
        match *event {
            Event::PersonRegistered {
                sex,
                birth_year,
                birth_month,
                municipality,
                nationality,
                ..
            } => {
                self.registered = true;
                self.nationality_code = country_value(Some(nationality));
                self.sex = sex;
                self.birth_year = birth_year;
                self.birth_month = birth_month;
                self.municipality_code = municipality.code();
            }
            Event::ResidenceUpdated { municipality, .. } if self.registered => {
                self.municipality_code = municipality.code()
            }
            Event::ExitRecorded {
                kind, destination, ..
            } => {
                self.exit = Some(kind);
                self.exit_destination_code = country_value(destination);
            }
            Event::PersonErased { .. } => self.erased = true,
            Event::PreRegistered {
                application_id,
                channel,
                ..
            } => {
                self.has_app = true;
                self.app_id = application_id;
                self.channel_code = channel;
                self.biometrics = false;
                self.approved = false;
                self.appeal_until = None;
            }
            Event::PermitIssued {
                permit_type,
                valid_until,
                ..
            } => {
                self.permit_type = Some(permit_type);
                self.permit_app_id = if self.has_app { self.app_id } else { 0 };
                self.permit_valid_until = valid_until;
                self.permit_cancelled = false;
                self.permit_superseded = false;
                self.permit_printed = false;
                self.permit_delivered = false;
            }
            Event::CardPrinted { .. } if has_permit => self.permit_printed = true,
            Event::CardDelivered { .. } if has_permit => self.permit_delivered = true,
            Event::ValidityExtended { valid_until, .. } if has_permit => {
                self.permit_valid_until = valid_until
            }
            Event::PermitCancelled { .. } if has_permit => self.permit_cancelled = true,
            Event::SupersededByVisa { valid_until, .. } => {
                self.visa = Some(valid_until);
                if has_permit && !self.permit_cancelled {
                    self.permit_superseded = true;
                }
            }
            Event::BiometricsCaptured { .. } if self.has_app => self.biometrics = true,
            Event::Approved { .. } | Event::AppealDecided { upheld: true, .. } if self.has_app => {
                self.approved = true
            }
            Event::Denied { appeal_until, .. } if self.has_app => self.appeal_until = Some(appeal_until),
            Event::FamilyLinkRecorded {
                role: LinkRole::WardOf,
                ..
            } => self.guardians = self.guardians.saturating_add(1),
            Event::FamilyLinkEnded {
                role: LinkRole::WardOf,
                ..
            } => self.guardians = self.guardians.saturating_sub(1),
            _ => {}
        }
    }

    /// Whether an active link names a guardian of this person.
    pub fn has_guardian(&self) -> bool {
        self.guardians > 0
    }

    /// Municipality of residence.
    pub fn municipality(&self) -> Option<Municipality> {
        Municipality::from_log(self.municipality_code)
    }

    /// Nationality recorded at registration.
    pub fn nationality(&self) -> Option<CountryCode> {
        country_of(self.nationality_code)
    }

    /// Destination recorded with the exit.
    pub fn exit_destination(&self) -> Option<CountryCode> {
        country_of(self.exit_destination_code)
    }

    /// Channel of the current application.
    pub fn channel(&self) -> Option<ChannelCode> {
        self.has_app.then_some(self.channel_code)
    }

    /// Folds a whole history.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> CaseFacts {
        let mut f = CaseFacts::default();
        for e in events {
            f.apply(e);
        }
        f
    }

    fn permit_active_on(&self, on: Date) -> bool {
        self.permit_type.is_some()
            && !self.permit_cancelled
            && !self.permit_superseded
            && self.permit_valid_until >= on
    }

    /// The derived status on `on` (as `person_status`; `on` on or after the
    /// latest business date applied).
    pub fn status_on(&self, on: Date) -> PersonStatus {
        if let Some(exit) = self.exit {
            return exit.status();
        }
        match self.stage {
            Stage::SupersededByVisa => match self.visa {
                Some(end) if end.is_none_or(|e| e >= on) => PersonStatus::RegularVisa,
                _ => PersonStatus::Irregular,
            },
            s if s.is_in(&Stage::PERMIT_HELD) => match self.permit_type {
                Some(t) if self.permit_active_on(on) => t.status(),
                _ => PersonStatus::Irregular,
            },
            Stage::Denied => match self.appeal_until {
                Some(until) if on <= until => PersonStatus::InProcess,
                _ => PersonStatus::Irregular,
            },
            s if s.is_in(&Stage::UNDECIDED) || s.is_in(&[Stage::Approved, Stage::AppealFiled]) => {
                PersonStatus::InProcess
            }
            _ => PersonStatus::Irregular,
        }
    }

    /// Age band on `on`.
    pub fn age_band_on(&self, on: Date) -> AgeBand {
        AgeBand::of(age_on(self.birth_year, self.birth_month, on))
    }

    /// Funnel milestones of the current application (as `CaseState::milestones`,
    /// with "approved" = the application was approved, directly or on appeal).
    pub fn funnel_bits(&self) -> u8 {
        if !self.has_app {
            return 0;
        }
        let mut bits = funnel::PRE_REGISTERED;
        if self.biometrics {
            bits |= funnel::BIOMETRICS;
        }
        if self.approved {
            bits |= funnel::APPROVED;
        }
        let permit_of_app = self.permit_type.is_some() && self.permit_app_id == self.app_id;
        if permit_of_app && self.permit_printed {
            bits |= funnel::PRINTED;
        }
        if permit_of_app && self.permit_delivered {
            bits |= funnel::DELIVERED;
        }
        bits
    }

    /// The end of validity of a permit currently held (not cancelled,
    /// superseded or exited), for "permits expiring per month".
    pub fn held_permit_until(&self) -> Option<Date> {
        (self.registered
            && self.exit.is_none()
            && self.stage.is_in(&Stage::PERMIT_HELD)
            && self.permit_type.is_some()
            && !self.permit_cancelled
            && !self.permit_superseded)
            .then_some(self.permit_valid_until)
    }

    /// Stored form (fixed size, big-endian).
    pub fn encode(&self) -> [u8; FACTS_BYTES] {
        let mut b = [0u8; FACTS_BYTES];
        let flags: u16 = (self.registered as u16)
            | (self.has_app as u16) << 1
            | (self.biometrics as u16) << 2
            | (self.approved as u16) << 3
            | (self.permit_cancelled as u16) << 4
            | (self.permit_superseded as u16) << 5
            | (self.permit_printed as u16) << 6
            | (self.permit_delivered as u16) << 7
            | (self.erased as u16) << 8
            | (self.visa.is_some() as u16) << 9
            | (self.visa.flatten().is_some() as u16) << 10
            | (self.appeal_until.is_some() as u16) << 11;
        b[0..2].copy_from_slice(&flags.to_be_bytes());
        b[2] = self.sex as u8;
        b[3..5].copy_from_slice(&self.birth_year.to_be_bytes());
        b[5] = self.birth_month;
        b[6..10].copy_from_slice(&self.municipality_code.to_be_bytes());
        b[10] = self.stage as u8;
        if let Some(c) = self.channel() {
            let s = c.as_str().as_bytes();
            b[11] = s.len() as u8;
            b[12..12 + s.len()].copy_from_slice(s);
        }
        // 12..27 channel bytes (15)
        b[27..31].copy_from_slice(&self.app_id.to_be_bytes());
        b[31] = self.permit_type.map_or(255, |t| t as u8);
        b[32..36].copy_from_slice(&self.permit_app_id.to_be_bytes());
        b[36..40].copy_from_slice(&date_bytes(self.permit_valid_until));
        b[40..44].copy_from_slice(&date_bytes(self.visa.flatten().unwrap_or(Date::MIN)));
        b[44..48].copy_from_slice(&date_bytes(self.appeal_until.unwrap_or(Date::MIN)));
        // The exit kind (0 = none) takes the flags' top three bits.
        let exit = self.exit.map_or(0u16, |k| k as u16 + 1);
        let flags = flags | exit << 13;
        b[0..2].copy_from_slice(&flags.to_be_bytes());
        // 48..51 nationality (zeros: none).
        if let Some(n) = self.nationality() {
            b[48..51].copy_from_slice(n.as_str().as_bytes());
        }
        // 51..54 exit destination (zeros: none).
        if let Some(n) = self.exit_destination() {
            b[51..54].copy_from_slice(n.as_str().as_bytes());
        }
        // 54 active guardian links.
        b[54] = self.guardians;
        b
    }

    /// Decodes [`CaseFacts::encode`]'s output.
    pub fn decode(b: &[u8]) -> Option<CaseFacts> {
        if b.len() != FACTS_BYTES {
            return None;
        }
        let flags = u16::from_be_bytes([b[0], b[1]]);
        let bit = |i: u16| flags & (1 << i) != 0;
        let channel = if b[11] == 0 {
            None
        } else {
            Some(ChannelCode::parse(
                std::str::from_utf8(&b[12..12 + b[11] as usize]).ok()?,
            )?)
        };
        let muni = u32::from_be_bytes(b[6..10].try_into().ok()?);
        let exit = (flags >> 13) as usize;
        Some(CaseFacts {
            registered: bit(0),
            has_app: bit(1),
            biometrics: bit(2),
            approved: bit(3),
            permit_cancelled: bit(4),
            permit_superseded: bit(5),
            permit_printed: bit(6),
            permit_delivered: bit(7),
            erased: bit(8),
            visa: bit(9).then_some(bit(10).then_some(date_from(&b[40..44])?)),
            appeal_until: bit(11).then_some(date_from(&b[44..48])?),
            sex: *Sex::ALL.get(b[2] as usize)?,
            birth_year: u16::from_be_bytes([b[3], b[4]]),
            birth_month: b[5],
            municipality_code: if muni == 0 {
                0
            } else {
                Municipality::from_log(muni)?.code()
            },
            stage: *Stage::ALL.get(b[10] as usize)?,
            channel_code: channel.unwrap_or(ChannelCode::UNKNOWN),
            app_id: u32::from_be_bytes(b[27..31].try_into().ok()?),
            permit_type: if b[31] == 255 {
                None
            } else {
                Some(*PermitType::ALL.get(b[31] as usize)?)
            },
            permit_app_id: u32::from_be_bytes(b[32..36].try_into().ok()?),
            permit_valid_until: date_from(&b[36..40])?,
            exit: if exit == 0 {
                None
            } else {
                Some(*ExitKind::ALL.get(exit - 1)?)
            },
            nationality_code: country_value(country_from(&b[48..51])?),
            exit_destination_code: country_value(country_from(&b[51..54])?),
            guardians: b[54],
        })
    }
}

/// A stored country code: three zero bytes are none; `None` when malformed.
fn country_from(b: &[u8]) -> Option<Option<CountryCode>> {
    if b == [0, 0, 0] {
        return Some(None);
    }
    Some(Some(CountryCode::from_log(std::str::from_utf8(b).ok()?)?))
}

pub(crate) fn date_bytes(d: Date) -> [u8; 4] {
    let y = d.year().to_be_bytes();
    [y[0], y[1], d.month(), d.day()]
}

pub(crate) fn date_from(b: &[u8]) -> Option<Date> {
    Date::new(u16::from_be_bytes([b[0], b[1]]), b[2], b[3])
}
