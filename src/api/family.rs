//! Family links at the boundary (docs/FAMILY_LINKS.md): the two link
//! commands' conversion and answer, and the wire form of a case's links.
//! A link names the other case by id only: nothing else of another case is
//! read or returned here.

use tonic::{Request, Response, Status};

use super::{pb, CaseworkerService};
use crate::cases::{CaseError, LinkOutcome};
use crate::domain::{Command, Date, FamilyLink, LinkEndReason, LinkEvidence, LinkRole};

/// Maps a prost enum value to the domain code with the same name.
fn code<T>(
    name: Option<&str>,
    prefix: &str,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, CaseError> {
    let name = name.ok_or_else(|| CaseError::invalid(field, "unknown value"))?;
    let code = name.strip_prefix(prefix).unwrap_or(name);
    if code == "UNSPECIFIED" {
        return Err(CaseError::invalid(field, "required"));
    }
    parse(code).ok_or_else(|| CaseError::invalid(field, "not accepted"))
}

pub(super) fn record(m: &pb::RecordFamilyLinkRequest, on: Date) -> Result<Command, CaseError> {
    let role = code(
        pb::FamilyLinkRole::try_from(m.role).ok().map(|v| v.as_str_name()),
        "FAMILY_LINK_ROLE_",
        "role",
        LinkRole::parse,
    )?;
    if !role.is_requestable() {
        return Err(CaseError::invalid(
            "role",
            "GUARDIAN_OF, PARENT_OF or DEPENDANT_OF (the other case records the inverse)",
        ));
    }
    let other_case_id = super::case_id_field_named(&m.other_case_id, "other_case_id")?;
    let evidence = code(
        pb::LinkEvidence::try_from(m.evidence)
            .ok()
            .map(|v| v.as_str_name()),
        "LINK_EVIDENCE_",
        "evidence",
        LinkEvidence::parse,
    )?;
    if !evidence.proves(role) {
        return Err(CaseError::invalid(
            "evidence",
            format!("{evidence} does not prove a {role} link"),
        ));
    }
    Ok(Command::RecordFamilyLink {
        on,
        link_id: String::new(),
        role,
        other_case_id,
        evidence,
    })
}

pub(super) fn end(m: &pb::EndFamilyLinkRequest, on: Date) -> Result<Command, CaseError> {
    if !crate::domain::family::is_link_id(&m.link_id) {
        return Err(CaseError::invalid("link_id", "required: L- and 20 hex digits"));
    }
    let reason = code(
        pb::LinkEndReason::try_from(m.reason)
            .ok()
            .map(|v| v.as_str_name()),
        "LINK_END_REASON_",
        "reason",
        LinkEndReason::parse,
    )?;
    Ok(Command::EndFamilyLink {
        on,
        link_id: m.link_id.clone(),
        reason,
    })
}

/// The wire form of a link.
pub(super) fn link(l: &FamilyLink) -> pb::FamilyLink {
    pb::FamilyLink {
        link_id: l.link_id.clone(),
        role: pb::FamilyLinkRole::from_str_name(&format!("FAMILY_LINK_ROLE_{}", l.role.as_str()))
            .map_or(0, |v| v as i32),
        other_case_id: l.other_case_id.clone(),
        evidence: pb::LinkEvidence::from_str_name(&format!("LINK_EVIDENCE_{}", l.evidence.as_str()))
            .map_or(0, |v| v as i32),
        since: l.since.to_string(),
    }
}

impl CaseworkerService {
    /// Runs a link command: the header checked as for every command, then
    /// both cases decided and appended at once.
    pub(super) async fn link_command(
        &self,
        principal: crate::auth::Principal,
        header: Option<pb::CommandHeader>,
        other_expected_version: u64,
        build: impl FnOnce(Date) -> Result<Command, CaseError>,
    ) -> Result<Response<pb::FamilyLinkResult>, Status> {
        let (ctx, on) = super::command_context(&principal, header)?;
        let today = ctx.today;
        let command = build(on)?;
        let o: LinkOutcome = self
            .cases
            .execute_link(ctx, other_expected_version, command)
            .await?;
        let result =
            |case_id, a, state, types: &[&str]| super::command_result(case_id, a, state, types, today);
        let (mine, theirs) = (&o.event_types, &o.other_event_types);
        Ok(Response::new(pb::FamilyLinkResult {
            link_id: o.link_id,
            result: Some(result(o.case_id, &o.appended, &o.state, mine)),
            other: Some(result(o.other_case_id, &o.other_appended, &o.other_state, theirs)),
        }))
    }
}

/// The `RecordFamilyLink` handler (a command of two cases).
pub(super) async fn record_family_link(
    svc: &CaseworkerService,
    r: Request<pb::RecordFamilyLinkRequest>,
) -> Result<Response<pb::FamilyLinkResult>, Status> {
    let (principal, m) = crate::auth::caller(r)?;
    svc.link_command(principal, m.header.clone(), m.other_expected_version, |on| {
        record(&m, on)
    })
    .await
}

/// The `EndFamilyLink` handler (a command of two cases).
pub(super) async fn end_family_link(
    svc: &CaseworkerService,
    r: Request<pb::EndFamilyLinkRequest>,
) -> Result<Response<pb::FamilyLinkResult>, Status> {
    let (principal, m) = crate::auth::caller(r)?;
    svc.link_command(principal, m.header.clone(), m.other_expected_version, |on| {
        end(&m, on)
    })
    .await
}
