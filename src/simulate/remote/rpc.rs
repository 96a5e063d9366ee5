//! The RPC mode: each client runs a person's commands in order, one
//! Caseworker RPC per command, and checks every answer's event types
//! against the local decision ([`expect`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{code_name, fatal, header, transient, ClientOutput, Shared, ATTEMPTS_MAX, BACKOFF_FIRST};
use crate::api::pb::caseworker_client::CaseworkerClient;
use crate::client::AuthChannel;
use crate::domain::{person_status, CaseState, ChannelCatalog, Event};
use crate::simulate::{plan_person, wire, PersonPlan, ServiceFailure, Tally, TODAY};

/// The generator's expectation for one plan: each command decided on
/// [`TODAY`] against the locally folded case, as the case service decides
/// it (sealed fields are placeholders; no rule reads them). Counts into
/// `tally` exactly what the direct mode counts; returns the event types of
/// each accepted step.
pub fn expect(plan: &PersonPlan, catalog: &ChannelCatalog, tally: &mut Tally) -> Vec<Vec<&'static str>> {
    let mut state = CaseState::default();
    let mut steps = Vec::with_capacity(plan.commands.len());
    for p in &plan.commands {
        tally.commands += 1;
        match state.decide(&p.command, TODAY, catalog) {
            Ok(events) => {
                let types: Vec<&'static str> = events.iter().map(Event::event_type).collect();
                tally.count_events(types.iter().copied());
                for e in &events {
                    state.apply(e);
                }
                steps.push(types);
            }
            Err(_) => {
                tally.rejected += 1;
                break;
            }
        }
    }
    let derived = (!steps.is_empty()).then(|| person_status(&state, TODAY));
    if !steps.is_empty() {
        tally.count_case(&state, TODAY);
    }
    tally.count_intended(plan.intended, derived);
    steps
}

/// One caseworker front-end: persons in turn, one RPC per command.
pub(super) async fn rpc_client(
    shared: Arc<Shared>,
    mut client: CaseworkerClient<AuthChannel>,
) -> ClientOutput {
    let mut out = ClientOutput::default();
    while let Some(index) = shared.run.take() {
        if let Err(failure) = rpc_person(&shared, &mut client, index, &mut out).await {
            shared.run.fail(failure);
            break;
        }
        shared.run.bar.inc(1);
    }
    out
}

/// Runs one person's plan; `Err` only when the run must stop.
async fn rpc_person(
    shared: &Shared,
    client: &mut CaseworkerClient<AuthChannel>,
    index: u64,
    out: &mut ClientOutput,
) -> Result<(), ServiceFailure> {
    let plan = plan_person(shared.run.seed, index);
    let expected = expect(&plan, &shared.catalog, &mut out.tally);
    let mut case_id = String::new();
    let mut version = 0;
    for (step, p) in plan.commands.iter().enumerate() {
        let name = p.command.name();
        let h = header(shared, index, step, &case_id, version, p.command.on().to_string());
        let command = wire::request(&p.command, &plan, h).map_err(|source| ServiceFailure::Wire {
            index,
            step,
            command: name,
            source,
        })?;
        out.commands += 1;
        let mut attempt = 1;
        let result = loop {
            match wire::call(client, command.clone()).await {
                Err(s) if transient(s.code()) && attempt < ATTEMPTS_MAX => {
                    out.retries += 1;
                    tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match result {
            Ok(r) => {
                if r.deduplicated {
                    out.deduplicated += 1;
                } else {
                    let n = r.last_seq + 1 - r.first_seq;
                    out.appended += n;
                    shared.run.events.fetch_add(n, Ordering::Relaxed);
                }
                out.last_seq = out.last_seq.max(r.last_seq);
                let agrees = expected
                    .get(step)
                    .is_some_and(|t| t.iter().copied().eq(r.event_types.iter().map(String::as_str)));
                if !agrees {
                    out.disagreements.add(name, || {
                        format!(
                            "person {index} step {step} {name}: the server recorded {:?}, the generator decided {:?}",
                            r.event_types,
                            expected.get(step)
                        )
                    });
                }
                version = r.version;
                case_id = r.case_id;
            }
            Err(s) if fatal(s.code()) => {
                return Err(ServiceFailure::Rpc {
                    index,
                    step,
                    command: name,
                    code: s.code(),
                    message: s.message().to_string(),
                    attempts: attempt,
                });
            }
            Err(s) => {
                out.rejections.add(&code_name(s.code()), || {
                    format!(
                        "person {index} step {step} {name}: {} {}",
                        code_name(s.code()),
                        s.message()
                    )
                });
                break;
            }
        }
    }
    Ok(())
}
