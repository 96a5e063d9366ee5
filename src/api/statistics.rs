//! The `Statistics` gRPC service (`proto/regularization/v1/statistics.proto`).
//!
//! Current-date answers read the shared, followed projection under a read
//! lock; point-in-time answers replay the log on a blocking thread.

use tonic::{Request, Response, Status};

use super::pb;
use crate::domain::Date;
use crate::projection::engine::{replay, AsOf, ProjectionSlot, Shared, SlotState};
use crate::projection::query::{caseload, CaseloadQuery, Dim, Filter};
use crate::projection::state::{Metric, ProjectionState};
use crate::projection::suppress::SuppressionRules;
use crate::projection::Points;

pub use pb::statistics_server::StatisticsServer;

/// Why a `Statistics` call failed (mapped to statuses in `api::status`).
#[derive(Debug, thiserror::Error)]
pub enum StatisticsError {
    /// A request field out of range: INVALID_ARGUMENT with a BadRequest
    /// naming `field`.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field's path, e.g. `as_of_date` or `filters.dimension`.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The projection is still loading after start-up (UNAVAILABLE).
    #[error("the statistics projection is still loading after start-up; retry shortly")]
    Loading,
    /// The projection could not be loaded (INTERNAL: not transient,
    /// retrying will not help until an operator acts).
    #[error("the statistics projection could not be loaded ({0}); an operator must run rebuild-projections")]
    LoadFailed(String),
    /// The projection is stale since its follower stopped (UNAVAILABLE: a
    /// restart resumes it from its checkpoint).
    #[error("the statistics projection stopped following the log ({0}); the service must be restarted")]
    Stopped(String),
    /// A point-in-time replay of the log failed (UNAVAILABLE).
    #[error("{0}")]
    Replay(crate::projection::ProjectionError),
    /// A blocking task panicked or was cancelled (INTERNAL).
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    /// `WorklistCounts` on a server without worklists (UNIMPLEMENTED).
    #[error("this server counts no worklists")]
    NoWorklists,
    /// The worklist projection cannot answer.
    #[error(transparent)]
    Worklists(#[from] super::worklists::WorklistServiceError),
    /// Counting the worklists failed (INTERNAL).
    #[error("{0}")]
    WorklistCounts(crate::projection::ProjectionError),
    /// `Release` on a server that builds none (UNIMPLEMENTED).
    #[error("this server builds no statistics releases")]
    NoReleases,
    /// Another release is being built (RESOURCE_EXHAUSTED).
    #[error("another statistics release is being built; retry when it is done")]
    ReleaseBusy,
    /// The release could not be built.
    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),
}

/// The service over a shared projection (which may still be loading).
#[derive(Clone)]
pub struct StatisticsService {
    slot: std::sync::Arc<ProjectionSlot>,
    /// The worklist projection and its follower, for `WorklistCounts`
    /// (none: UNIMPLEMENTED).
    worklists: Option<super::worklists::WorklistService>,
    rules: SuppressionRules,
    /// The store and its audit signer, for `Release` (none: UNIMPLEMENTED),
    /// and the one permit to build: a release replays the log up to its
    /// position, so one is built at a time.
    releases: Option<(crate::audit::Audit, std::sync::Arc<tokio::sync::Semaphore>)>,
}

impl StatisticsService {
    /// Over a loaded projection.
    pub fn new(shared: Shared, rules: SuppressionRules) -> StatisticsService {
        StatisticsService::with_slot(std::sync::Arc::new(ProjectionSlot::loaded(shared)), rules)
    }

    /// Over a projection that a follower loads: UNAVAILABLE until it is loaded.
    pub fn with_slot(slot: std::sync::Arc<ProjectionSlot>, rules: SuppressionRules) -> StatisticsService {
        StatisticsService {
            slot,
            rules,
            releases: None,
            worklists: None,
        }
    }

    /// Answers `Release` too: builds releases from this store and signs them
    /// with its audit key (docs/RELEASES.md).
    pub fn with_releases(mut self, audit: crate::audit::Audit) -> StatisticsService {
        self.releases = Some((audit, std::sync::Arc::new(tokio::sync::Semaphore::new(1))));
        self
    }

    /// Answers `WorklistCounts` from this worklist service's projection.
    pub fn with_worklists(mut self, worklists: super::worklists::WorklistService) -> StatisticsService {
        self.worklists = Some(worklists);
        self
    }

    fn shared(&self) -> Result<&Shared, StatisticsError> {
        match self.slot.state() {
            SlotState::Ready(s) => Ok(s),
            SlotState::Loading => Err(StatisticsError::Loading),
            // Not transient: retrying will not help until an operator acts.
            SlotState::Failed(e) => Err(StatisticsError::LoadFailed(e.to_string())),
            // Stale since its follower stopped: a restart resumes it from its checkpoint.
            SlotState::Stopped(e) => Err(StatisticsError::Stopped(e.to_string())),
        }
    }

    /// The tonic server for this service, with the gRPC message size limits.
    pub fn into_server(self) -> StatisticsServer<StatisticsService> {
        StatisticsServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }

    fn with_state<T>(&self, f: impl FnOnce(&ProjectionState) -> T) -> Result<T, StatisticsError> {
        let e = self.shared()?.read().unwrap_or_else(|p| p.into_inner());
        Ok(f(e.state()))
    }
}

fn invalid(field: &'static str, msg: impl std::fmt::Display) -> StatisticsError {
    StatisticsError::Invalid {
        field,
        reason: msg.to_string(),
    }
}

fn month(field: &'static str, text: &str) -> Result<Option<u32>, StatisticsError> {
    if text.is_empty() {
        return Ok(None);
    }
    let d = Date::parse(&format!("{text}-01")).ok_or_else(|| invalid(field, "expected YYYY-MM"))?;
    Ok(Some(crate::projection::month_index(d)))
}

fn position(seq: u64, hash: String) -> Option<pb::LogPosition> {
    Some(pb::LogPosition { seq, hash })
}

fn points_response(p: Points) -> pb::PointsResponse {
    pb::PointsResponse {
        what: p.what,
        points: p
            .points
            .into_iter()
            .map(|pt| pb::Point {
                label: pt.label,
                count: pt.count.unwrap_or(0),
                suppressed: pt.count.is_none(),
            })
            .collect(),
        position: position(p.seq, p.hash),
    }
}

#[tonic::async_trait]
impl pb::statistics_server::Statistics for StatisticsService {
    async fn caseload(
        &self,
        request: Request<pb::CaseloadRequest>,
    ) -> Result<Response<pb::CaseloadResponse>, Status> {
        let r = request.into_inner();
        let mut by = Vec::new();
        for d in &r.by {
            by.push(Dim::parse(d).ok_or_else(|| {
                invalid(
                    "by",
                    format!(
                        "unknown dimension {:?}",
                        d.chars()
                            .take(crate::limits::ECHOED_VALUE_CHARS_MAX)
                            .collect::<String>()
                    ),
                )
            })?);
        }
        let filters = r
            .filters
            .iter()
            .map(|f| {
                Ok(Filter {
                    dim: Dim::parse(&f.dimension)
                        .ok_or_else(|| invalid("filters.dimension", "unknown dimension"))?,
                    values: f.values.clone(),
                })
            })
            .collect::<Result<Vec<_>, StatisticsError>>()?;
        let q = CaseloadQuery {
            by,
            filters,
            published: r.published,
        };
        crate::projection::query::validate(&q).map_err(|m| invalid("by/filters", m))?;
        let as_of = if r.as_of_date.is_empty() {
            None
        } else {
            Some(Date::parse(&r.as_of_date).ok_or_else(|| invalid("as_of_date", "expected YYYY-MM-DD"))?)
        };
        let rules = self.rules;
        // Current projection when the date is the cube's, or later than every
        // business date applied (a scan of the facts); else a replay.
        let (cube_date, max_on, store) = {
            let e = self.shared()?.read().unwrap_or_else(|p| p.into_inner());
            (e.state().cube_date(), e.state().max_on(), e.store().clone())
        };
        let table = if r.as_of_seq == 0 && as_of.is_none_or(|d| d == cube_date) {
            self.with_state(|s| caseload(s, &q, &rules))?
        } else {
            let shared = self.shared()?.clone();
            let seq = r.as_of_seq;
            tokio::task::spawn_blocking(
                move || -> Result<Result<_, crate::projection::QueryError>, crate::projection::ProjectionError> {
                    let state = if seq > 0 {
                        replay(&store, AsOf::Seq(seq, as_of))?
                    } else {
                        let d = as_of.expect("date");
                        if max_on.is_some_and(|m| d < m) {
                            // A past month-end: its snapshot; another past date: a replay.
                            let snapshot = shared
                                .read()
                                .unwrap_or_else(|p| p.into_inner())
                                .state()
                                .month_end_state(d);
                            match snapshot {
                                Some(state) => state,
                                None => replay(&store, AsOf::Date(d))?,
                            }
                        } else {
                            shared
                                .read()
                                .unwrap_or_else(|p| p.into_inner())
                                .state()
                                .cube_only_at(d)
                        }
                    };
                    Ok(caseload(&state, &q, &rules))
                },
            )
            .await
            .map_err(StatisticsError::Task)?
            .map_err(StatisticsError::Replay)?
        }
        .map_err(|m| invalid("filters", m))?;
        Ok(Response::new(pb::CaseloadResponse {
            dimensions: table.dims.iter().map(|d| d.as_str().to_string()).collect(),
            cells: table
                .rows
                .into_iter()
                .map(|row| pb::Cell {
                    values: row.values,
                    count: row.count.unwrap_or(0),
                    suppressed: row.count.is_none(),
                })
                .collect(),
            total: table.total.unwrap_or(0),
            total_suppressed: table.total.is_none(),
            as_of_date: table.as_of_date,
            position: position(table.seq, table.hash),
        }))
    }

    async fn series(
        &self,
        request: Request<pb::SeriesRequest>,
    ) -> Result<Response<pb::PointsResponse>, Status> {
        let r = request.into_inner();
        let metric = Metric::parse(&r.metric).ok_or_else(|| invalid("metric", "unknown metric"))?;
        let (from, to) = (
            month("from_month", &r.from_month)?,
            month("to_month", &r.to_month)?,
        );
        let by = crate::projection::series_breakdown(&r.by).map_err(|e| invalid("by", e))?;
        let rules = self.rules;
        let p =
            self.with_state(|s| crate::projection::series_by(s, metric, &by, from, to, r.published, &rules))?;
        Ok(Response::new(points_response(p)))
    }

    async fn funnel(
        &self,
        request: Request<pb::FunnelRequest>,
    ) -> Result<Response<pb::PointsResponse>, Status> {
        let r = request.into_inner();
        let rules = self.rules;
        let p = self.with_state(|s| crate::projection::funnel(s, r.published, &rules))?;
        Ok(Response::new(points_response(p)))
    }

    async fn certifications(
        &self,
        request: Request<pb::CertificationsRequest>,
    ) -> Result<Response<pb::PointsResponse>, Status> {
        let r = request.into_inner();
        let rules = self.rules;
        let p = self.with_state(|s| {
            crate::projection::certifications(s, r.by_route, r.by_sector, r.by_stage, r.published, &rules)
        })?;
        Ok(Response::new(points_response(p)))
    }

    async fn expiring_permits(
        &self,
        request: Request<pb::ExpiringPermitsRequest>,
    ) -> Result<Response<pb::PointsResponse>, Status> {
        let r = request.into_inner();
        let (from, to) = (
            month("from_month", &r.from_month)?,
            month("to_month", &r.to_month)?,
        );
        let rules = self.rules;
        let p = self.with_state(|s| crate::projection::expiring(s, from, to, r.published, &rules))?;
        Ok(Response::new(points_response(p)))
    }

    async fn worklist_counts(
        &self,
        request: Request<pb::WorklistCountsRequest>,
    ) -> Result<Response<pb::WorklistCountsResponse>, Status> {
        let r = request.into_inner();
        let reference = if r.as_of_date.is_empty() {
            crate::clock::today()
        } else {
            Date::parse(&r.as_of_date).ok_or_else(|| invalid("as_of_date", "expected YYYY-MM-DD"))?
        };
        let service = self.worklists.as_ref().ok_or(StatisticsError::NoWorklists)?;
        let lists = service.worklists().map_err(StatisticsError::from)?.clone();
        let (counts, position) = tokio::task::spawn_blocking(move || {
            crate::worklist::query::counts(&lists, reference, crate::limits::WORKLIST_HORIZON_DAYS_DEFAULT)
        })
        .await
        .map_err(StatisticsError::Task)?
        .map_err(StatisticsError::WorklistCounts)?;
        // The table as published (disclosure control here, with this
        // server's thresholds); zero cells are the client's to fill in.
        let table = crate::projection::export::from_worklists(
            &counts,
            reference,
            position.seq,
            position.hash_hex(),
            r.published,
            &self.rules,
        );
        let cells = table
            .rows
            .into_iter()
            .filter(|row| row.obs_status != crate::projection::export::ObsStatus::Zero)
            .map(|row| {
                let mut values = row.values.into_iter();
                pb::WorklistCount {
                    list: values.next().unwrap_or_default(),
                    department: values.next().unwrap_or_default(),
                    count: row.count.unwrap_or(0),
                    suppressed: row.count.is_none(),
                }
            })
            .collect();
        Ok(Response::new(pb::WorklistCountsResponse {
            cells,
            as_of_date: reference.to_string(),
            position: self::position(position.seq, position.hash_hex()),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        let (audit, building) = self.releases.clone().ok_or(StatisticsError::NoReleases)?;
        let _permit = building
            .try_acquire_owned()
            .map_err(|_| StatisticsError::ReleaseBusy)?;
        let rules = self.rules;
        let as_of_seq = (r.as_of_seq > 0).then_some(r.as_of_seq);
        let release = tokio::task::spawn_blocking(move || crate::release::build(&audit, as_of_seq, &rules))
            .await
            .map_err(StatisticsError::Task)?
            .map_err(StatisticsError::Release)?;
        Ok(Response::new(pb::ReleaseResponse {
            seq: release.seq,
            files: release
                .files
                .into_iter()
                .map(|(name, content)| pb::ReleaseFile { name, content })
                .collect(),
        }))
    }
}
