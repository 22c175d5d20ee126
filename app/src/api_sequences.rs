//! Server functions for sequences: list, create, open (masked for readers who may not read
//! contacts), save the working copy, publish (optionally moving waiting contacts), pause / resume
//! / archive, enrolments per sequence and per contact, an enrolment's decision trail, removing a
//! contact from a sequence, enrolling one, a test run, and the report. Thin edges: authorisation,
//! validation and auditing happen in `service::sequences`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::sequence_report::SequenceReport as Report;
use domain::sequences::{
    EnrolmentState, EnrolmentView, SequenceDefinition, SequenceStatus, SequenceSummary, SequenceView, Simulation,
    TestRunStep, TrailEntry,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

/// Most enrolments the tab lists at once (newest first).
pub const ENROLMENT_PAGE: u32 = 200;

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_sequences")]
pub async fn list_sequences() -> Result<Vec<SequenceSummary>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_sequence")]
pub async fn create_sequence(name: String) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::create(&svc, &actor, &name).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "open_sequence")]
pub async fn open_sequence(id: Uuid) -> Result<SequenceView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::get(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "save_sequence", input = Json)]
pub async fn save_sequence(
    id: Uuid,
    name: String,
    from_name: String,
    from_email: String,
    definition: SequenceDefinition,
) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    let input = service::sequences::DraftInput { name, from_name, from_email, definition };
    Ok(service::sequences::save_draft(&svc, &actor, id, &input).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "publish_sequence", input = Json)]
pub async fn publish_sequence(id: Uuid, move_waiting_at: Vec<String>) -> Result<i32, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::publish(&svc, &actor, id, &move_waiting_at).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "set_sequence_status", input = Json)]
pub async fn set_sequence_status(id: Uuid, status: SequenceStatus) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::set_status(&svc, &actor, id, status).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "sequence_enrolments", input = Json)]
pub async fn sequence_enrolments(id: Uuid, state: Option<EnrolmentState>) -> Result<Vec<EnrolmentView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::enrolments(&svc, &actor, id, state, ENROLMENT_PAGE).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "contact_enrolments")]
pub async fn contact_enrolments(id: Uuid) -> Result<Vec<EnrolmentView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::contact_enrolments(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "enrolment_trail")]
pub async fn enrolment_trail(id: Uuid) -> Result<Vec<TrailEntry>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::trail(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "remove_enrolment")]
pub async fn remove_enrolment(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::remove(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "enrol_contact")]
pub async fn enrol_contact(id: Uuid, contact: Uuid) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::enrol(&svc, &actor, id, contact).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "test_run_sequence", input = Json)]
pub async fn test_run_sequence(
    id: Uuid,
    simulation: Simulation,
    time_zone: Option<String>,
) -> Result<Vec<TestRunStep>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::test_run(&svc, &actor, id, &simulation, time_zone.as_deref()).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "sequence_report")]
pub async fn sequence_report(id: Uuid) -> Result<Report, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sequences::report::report(&svc, &actor, id).await?)
}
