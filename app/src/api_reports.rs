//! Server functions for the analyst reports: the page's context (report time zone, today), the
//! overview of a date range, the comparison of campaigns and sequence emails, and changing the
//! report time zone. Thin edges: authorisation, validation and disclosure control happen in
//! `service::reports` and `domain::reports`. Exports (CSV, SVG) are plain downloads
//! (`server::downloads`).

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::reports::{Comparison, Curves, Drill, Overview, ReportSetup, SourceRef};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "report_context")]
pub async fn report_context() -> Result<ReportSetup, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::reports::context(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "report_overview")]
pub async fn report_overview(from: String, to: String) -> Result<Overview, AppError> {
    let (svc, actor) = ssr::actor()?;
    let range = service::reports::parse_range(&from, &to)?;
    Ok(service::reports::overview(&svc, &actor, range).await?)
}

/// The home page's figures: the last 7 days, asked in one request.
#[server(client = CsrfClient, prefix = "/api", endpoint = "report_home")]
pub async fn report_home() -> Result<Overview, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::reports::recent(&svc, &actor, 7).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "report_comparison")]
pub async fn report_comparison(from: String, to: String) -> Result<Comparison, AppError> {
    let (svc, actor) = ssr::actor()?;
    let range = service::reports::parse_range(&from, &to)?;
    Ok(service::reports::comparison(&svc, &actor, range).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "set_report_time_zone")]
pub async fn set_report_time_zone(time_zone: String) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::reports::set_time_zone(&svc, &actor, &time_zone).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "report_drill")]
pub async fn report_drill(kind: String, id: Uuid, step: String, from: String, to: String) -> Result<Drill, AppError> {
    let (svc, actor) = ssr::actor()?;
    let range = service::reports::parse_range(&from, &to)?;
    let kind = domain::reports::SourceRef::parse_kind(&kind)
        .ok_or_else(|| service::ServiceError::invalid("kind", "must be campaign, sequence_email or api_message"))?;
    Ok(service::reports::drill(&svc, &actor, SourceRef { kind, id, step_id: step }, range).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "report_curves", input = Json)]
pub async fn report_curves(sources: Vec<SourceRef>) -> Result<Curves, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::reports::curves(&svc, &actor, sources).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "report_digest")]
pub async fn report_digest() -> Result<bool, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::reports::digest::get(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "set_report_digest")]
pub async fn set_report_digest(on: bool) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::reports::digest::set(&svc, &actor, on).await?)
}
