//! Typed errors of the domain: why a command was refused, why a channel
//! catalog could not be loaded.

/// Why [`CaseState::decide`](super::CaseState::decide) refused a command.
/// Nothing is appended when a command is refused.
///
/// The API layer maps these to gRPC statuses: `IllegalTransition` and
/// `Erased` to FAILED_PRECONDITION, `Invalid` to INVALID_ARGUMENT,
/// `CaseAlreadyExists` to ALREADY_EXISTS, `NoSuchCase` to NOT_FOUND.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The command is well formed but not allowed in the case's current
    /// state; `state` is the stable state code (see `CaseState::state_name`)
    /// so a caseworker sees where the case stands.
    #[error("{command} is not allowed in state {state}: {reason}")]
    IllegalTransition {
        /// The command's name, e.g. `DeliverCard`.
        command: &'static str,
        /// The current state code, e.g. `PERMIT_ISSUED`.
        state: &'static str,
        /// What is missing or wrong, in words a caseworker understands.
        reason: String,
    },
    /// The command is well formed, but a rule of the law or of the channel
    /// refuses it for this case on this date: a window that is closed, a
    /// step for adults on a minor, a once-per-person permit already held,
    /// a date before the case's own timeline. The API answers
    /// FAILED_PRECONDITION with the rule's stable code.
    #[error("{command} is not allowed in state {state}: {reason} (rule {rule})")]
    RuleViolated {
        /// The command's name.
        command: &'static str,
        /// The current state code.
        state: &'static str,
        /// Stable code of the rule, e.g. `CHANNEL_WINDOW` (see [`Rejection::RULES`]).
        rule: &'static str,
        /// The command field the rule looks at (e.g. `on`).
        field: &'static str,
        /// The rule and the date or deadline, in words a caseworker understands.
        reason: String,
    },
    /// A field of the command is invalid on its own or against the channel
    /// rules (unknown channel, date outside a window, bad DIVIPOLA code ...).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The command field at fault.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// `RegisterPerson` on a stream that already holds a case.
    #[error("the case already exists")]
    CaseAlreadyExists,
    /// A command other than `RegisterPerson` on an empty stream.
    #[error("no such case")]
    NoSuchCase,
    /// A command on a person whose identifying data was erased, other than
    /// the closing steps ([`Command::allowed_after_erasure`](super::Command::allowed_after_erasure)):
    /// an erased case records no new step of its process (no biometrics,
    /// decisions, cards or personal data), only how it ends.
    #[error(
        "{command} is not allowed: this person's identifying data was erased on {erased_on}; \
         only closing steps remain (Withdraw, CancelPermit, AbandonCard, DenyCertification, RecordExit)"
    )]
    Erased {
        /// The refused command's name.
        command: &'static str,
        /// The business date of the erasure.
        erased_on: super::Date,
    },
}

impl Rejection {
    /// Every rule code a [`Rejection::RuleViolated`] may carry.
    pub const RULES: [&'static str; 20] = [
        "CASE_TIMELINE",
        "CHANNEL_WINDOW",
        "ONCE_PER_PERSON",
        "APPLICATIONS_MAX",
        "ADULTS_ONLY",
        "CERTIFICATIONS_MAX",
        "APPOINTMENT_NOT_REACHED",
        "CHANNEL_PERMITS_ENDED",
        "CARD_COLLECTION_PERIOD",
        "SUBJECT_REQUESTS_MAX",
        "EXTENSION_ONCE",
        "SUBJECT_REQUEST_DUE",
        "SUBJECT_REQUEST_ANSWERED",
        "FAMILY_LINK_DUPLICATE",
        "FAMILY_LINKS_MAX",
        "FAMILY_LINK_AGE",
        "FAMILY_LINK_ENDED",
        "FAMILY_LINK_CASE_ERASED",
        "FAMILY_LINK_CASE_EXITED",
        "PEP_TUTOR_NO_ELIGIBLE_MINOR",
    ];

    /// Shorthand for an [`Rejection::Invalid`].
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a channel catalog document was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The JSON does not match the catalog schema.
    #[error("channel catalog is not valid JSON for the schema: {0}")]
    Json(#[from] serde_json::Error),
    /// The document's version is not one this build reads.
    #[error("channel catalog version {0} is not supported (expected 1)")]
    UnsupportedVersion(u32),
    /// The data parses but breaks a catalog rule (duplicate code, window
    /// closing before it opens ...).
    #[error("channel {channel}: {reason}")]
    Rule {
        /// The channel at fault (empty for catalog-wide rules).
        channel: String,
        /// The rule it breaks.
        reason: String,
    },
}
