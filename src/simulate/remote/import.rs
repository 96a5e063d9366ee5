//! The import mode (`--import`): each client sends person after person as
//! one `ImportCaseHistory` on `Import.ImportCases` client streams, a
//! bounded and adapted number of histories per stream; a stream cut by a
//! transient failure is sent again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::rpc::expect;
use super::{
    code_name, header, transient, ClientOutput, Shared, ATTEMPTS_MAX, BACKOFF_FIRST, IMPORT_STREAM_SECS,
};
use crate::api::pb;
use crate::api::pb::import_client::ImportClient;
use crate::client::AuthChannel;
use crate::simulate::{plan_person, wire, PersonPlan, ServiceFailure};

/// The duration an import stream aims at: the number of histories per
/// stream doubles while streams take under half of it and halves when they
/// take over twice it (a stream must finish within the server's 30 s).
const IMPORT_STREAM_TARGET: Duration = Duration::from_secs(4);
/// Histories per import stream: first, fewest and most.
const IMPORT_BATCH_START: usize = 32;
const IMPORT_BATCH_MIN: usize = 4;
const IMPORT_BATCH_MAX: usize = 2048;
/// Histories a client queues ahead of its import stream.
const IMPORT_QUEUE_HISTORIES: usize = 8;

/// Person `index` as an import history: every command's case id left empty
/// (the server continues the history's case and version).
fn history(shared: &Shared, index: u64, plan: &PersonPlan) -> Result<pb::ImportCaseHistory, ServiceFailure> {
    let mut commands = Vec::with_capacity(plan.commands.len());
    for (step, p) in plan.commands.iter().enumerate() {
        let h = header(shared, index, step, "", 0, p.command.on().to_string());
        let c = wire::request(&p.command, plan, h).map_err(|source| ServiceFailure::Wire {
            index,
            step,
            command: p.command.name(),
            source,
        })?;
        commands.push(pb::ImportCommand { command: Some(c) });
    }
    Ok(pb::ImportCaseHistory {
        legacy_ref: format!("sim-{}-{index}", shared.run.seed),
        commands,
    })
}

/// One migration client: persons in turn, as histories on consecutive streams.
pub(super) async fn import_client(
    shared: Arc<Shared>,
    mut client: ImportClient<AuthChannel>,
) -> ClientOutput {
    let mut out = ClientOutput::default();
    if let Err(failure) = import_streams(&shared, &mut client, &mut out).await {
        shared.run.fail(failure);
    }
    out
}

async fn import_streams(
    shared: &Shared,
    client: &mut ImportClient<AuthChannel>,
    out: &mut ClientOutput,
) -> Result<(), ServiceFailure> {
    // Persons sent again: those of a stream that failed on a transient error,
    // and those whose history was refused with a transient code.
    let mut resend: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    let mut attempts: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut batch = IMPORT_BATCH_START;
    let mut stream_failures = 0;
    let mut exhausted = false;
    loop {
        if exhausted && resend.is_empty() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportCaseHistory>(IMPORT_QUEUE_HISTORIES);
        let again: Vec<u64> = resend.drain(..resend.len().min(batch)).collect();
        let (tally, commands) = (&mut out.tally, &mut out.commands);
        let producer = async move {
            let started = Instant::now();
            let mut sent: Vec<u64> = Vec::new();
            let mut none_left = false;
            let mut again = again.into_iter();
            while sent.len() < batch {
                let (index, plan) = if let Some(index) = again.next() {
                    (index, plan_person(shared.run.seed, index))
                } else if started.elapsed() >= Duration::from_secs(IMPORT_STREAM_SECS) {
                    break;
                } else if let Some(index) = shared.run.take() {
                    let plan = plan_person(shared.run.seed, index);
                    expect(&plan, &shared.catalog, tally);
                    *commands += plan.commands.len() as u64;
                    (index, plan)
                } else {
                    none_left = true;
                    break;
                };
                let h = history(shared, index, &plan)?;
                sent.push(index);
                if tx.send(h).await.is_err() {
                    // The call ended early (it failed): the rest goes with it.
                    sent.extend(again.by_ref());
                    break;
                }
            }
            Ok::<_, ServiceFailure>((sent, none_left))
        };
        let started = Instant::now();
        let call = client.import_cases(ReceiverStream::new(rx));
        let (produced, result) = tokio::join!(producer, call);
        let (sent, none_left) = produced?;
        exhausted |= none_left;
        if sent.is_empty() {
            continue;
        }
        match result {
            Ok(summary) => {
                let s = summary.into_inner();
                stream_failures = 0;
                // Keep a stream well within the server's deadline.
                let took = started.elapsed();
                if took < IMPORT_STREAM_TARGET / 2 {
                    batch = (batch * 2).min(IMPORT_BATCH_MAX);
                } else if took > IMPORT_STREAM_TARGET * 2 {
                    batch = (batch / 2).max(IMPORT_BATCH_MIN);
                }
                out.appended += s.events_appended;
                out.deduplicated += s.commands_deduplicated;
                out.skipped += s.commands_skipped;
                out.last_seq = out.last_seq.max(s.last_seq);
                shared.run.events.fetch_add(s.events_appended, Ordering::Relaxed);
                let mut requeued = 0;
                let listed = s.rejections.len() as u64;
                for r in s.rejections {
                    let code = Code::from_i32(r.code);
                    let person = sent.get(r.history_index as usize).copied();
                    if let Some(person) = person.filter(|_| transient(code)) {
                        let n = attempts.entry(person).or_insert(1);
                        if *n < ATTEMPTS_MAX {
                            *n += 1;
                            out.retries += 1;
                            resend.push_back(person);
                            requeued += 1;
                            continue;
                        }
                    }
                    let name = code_name(code);
                    out.rejections.add(&name, || {
                        let step = r.command_index.map_or("-".to_string(), |k| k.to_string());
                        let who = person.map_or("?".to_string(), |p| p.to_string());
                        format!("person {who} step {step} {}: {name} {}", r.command, r.message)
                    });
                }
                let unlisted = s.rejections_total.saturating_sub(listed);
                if unlisted > 0 {
                    // The server lists the first ones only; their codes are unknown.
                    out.rejections.total += unlisted;
                    *out.rejections
                        .by_code
                        .entry("NOT_LISTED_BY_THE_SERVER".into())
                        .or_insert(0) += unlisted;
                }
                shared.run.bar.inc(sent.len() as u64 - requeued);
            }
            Err(s) if transient(s.code()) && stream_failures + 1 < ATTEMPTS_MAX => {
                stream_failures += 1;
                out.retries += 1;
                batch = (batch / 4).max(IMPORT_BATCH_MIN);
                tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(stream_failures - 1)).await;
                resend.extend(sent);
            }
            Err(s) => {
                return Err(ServiceFailure::ImportStream {
                    persons: sent.len(),
                    code: s.code(),
                    message: s.message().to_string(),
                    attempts: stream_failures + 1,
                });
            }
        }
    }
}
