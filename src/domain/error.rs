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
    /// A command that carries sealed personal data, for a person whose
    /// identifying data was erased: it would bring the data back.
    #[error("{command} carries personal data, but this person's identifying data was erased")]
    Erased {
        /// The refused command's name.
        command: &'static str,
    },
}

impl Rejection {
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
