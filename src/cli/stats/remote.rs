//! `registry stats --target`: the same question asked of a running server's
//! Statistics service, its answer turned into the same [`LongTable`] as the
//! offline command's.

use crate::cli::BoxError;
use std::time::Duration;

use super::Question;
use crate::api::pb;
use crate::api::pb::statistics_client::StatisticsClient;
use crate::client::ClientOptions;
use crate::domain::Date;
use crate::projection::export::{self, LongTable, TableKind};
use crate::projection::query::{Dim, Row, Table};
use crate::projection::{Point, Points};

/// How long to keep trying to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

fn failed(rpc: &str, target: &str, s: tonic::Status) -> String {
    format!("Statistics/{rpc} at {target}: {:?}: {}", s.code(), s.message())
}

fn points(r: pb::PointsResponse) -> Points {
    let (seq, hash) = r.position.map_or((0, String::new()), |p| (p.seq, p.hash));
    Points {
        what: r.what,
        points: r
            .points
            .into_iter()
            .map(|p| Point {
                label: p.label,
                count: (!p.suppressed).then_some(p.count),
            })
            .collect(),
        seq,
        hash,
        as_of_date: String::new(),
    }
}

/// Asks the server; blocks until it answers.
pub fn fetch(options: &ClientOptions, q: &Question) -> Result<LongTable, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(ask(options, q))
}

async fn ask(options: &ClientOptions, q: &Question) -> Result<LongTable, BoxError> {
    let target = options.target.as_str();
    let channel = crate::client::connect(options, CONNECT_WAIT).await?;
    let mut client =
        StatisticsClient::new(channel).max_decoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX);
    let month = |m: &Option<(u32, String)>| m.as_ref().map_or_else(String::new, |m| m.1.clone());
    let published = q.published;
    let (from, to) = (q.from.as_ref().map(|m| m.0), q.to.as_ref().map(|m| m.0));
    let p = match q.kind {
        TableKind::Caseload => {
            let request = pb::CaseloadRequest {
                by: q.caseload.by.iter().map(|d| d.as_str().to_string()).collect(),
                filters: q
                    .caseload
                    .filters
                    .iter()
                    .map(|f| pb::DimensionFilter {
                        dimension: f.dim.as_str().to_string(),
                        values: f.values.clone(),
                    })
                    .collect(),
                as_of_date: q.as_of.map_or_else(String::new, |d| d.to_string()),
                as_of_seq: q.as_of_seq.unwrap_or(0),
                published,
            };
            let r = client
                .caseload(request)
                .await
                .map_err(|s| failed("Caseload", target, s))?
                .into_inner();
            let dims = r
                .dimensions
                .iter()
                .map(|d| {
                    Dim::parse(d).ok_or_else(|| format!("the server answered an unknown dimension {d:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (seq, hash) = r.position.map_or((0, String::new()), |p| (p.seq, p.hash));
            let table = Table {
                dims,
                rows: r
                    .cells
                    .into_iter()
                    .map(|c| Row {
                        values: c.values,
                        count: (!c.suppressed).then_some(c.count),
                    })
                    .collect(),
                total: (!r.total_suppressed).then_some(r.total),
                as_of_date: r.as_of_date,
                seq,
                hash,
                published,
                suppressed_cells: 0,
            };
            return Ok(export::from_caseload(&table, &q.caseload.filters));
        }
        TableKind::Series => {
            let metric = q.metric.ok_or("--metric: required for --table series")?;
            let request = pb::SeriesRequest {
                metric: metric.as_str().to_string(),
                from_month: month(&q.from),
                to_month: month(&q.to),
                published,
                by: q.breakdown.iter().map(|d| d.to_string()).collect(),
            };
            client
                .series(request)
                .await
                .map_err(|s| failed("Series", target, s))?
        }
        TableKind::Funnel => client
            .funnel(pb::FunnelRequest { published })
            .await
            .map_err(|s| failed("Funnel", target, s))?,
        TableKind::Certifications => {
            let has = |d: &str| q.breakdown.contains(&d);
            let request = pb::CertificationsRequest {
                by_route: has("route"),
                by_sector: has("sector"),
                by_stage: has("stage"),
                published,
            };
            client
                .certifications(request)
                .await
                .map_err(|s| failed("Certifications", target, s))?
        }
        TableKind::Worklists => {
            let request = pb::WorklistCountsRequest {
                as_of_date: q.as_of.map_or_else(String::new, |d| d.to_string()),
                published,
            };
            let r = client
                .worklist_counts(request)
                .await
                .map_err(|s| failed("WorklistCounts", target, s))?
                .into_inner();
            let reference = Date::parse(&r.as_of_date)
                .ok_or_else(|| format!("the server answered a date {:?}", r.as_of_date))?;
            let (seq, hash) = r.position.map_or((0, String::new()), |p| (p.seq, p.hash));
            let cells = r
                .cells
                .into_iter()
                .map(|c| (c.list, c.department, (!c.suppressed).then_some(c.count)))
                .collect();
            return Ok(export::worklists_table(cells, reference, seq, hash, published));
        }
        TableKind::ExpiringPermits => {
            let request = pb::ExpiringPermitsRequest {
                from_month: month(&q.from),
                to_month: month(&q.to),
                published,
            };
            client
                .expiring_permits(request)
                .await
                .map_err(|s| failed("ExpiringPermits", target, s))?
        }
    };
    let points = points(p.into_inner());
    Ok(export::from_points(
        q.kind,
        &points,
        &q.breakdown,
        from,
        to,
        published,
    ))
}
