//! Server functions for segments: builder options, list, open, create, update, duplicate, delete,
//! live count (of the builder's tree, for people who may read contacts), count of a saved segment
//! (every role that sees segments, with disclosure control), member preview (audited PHI read) and
//! save as a static list. Thin edges: authorisation, disclosure control and auditing happen in
//! `service::segments`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::segment_views::{BuilderOptions, SegmentCount, SegmentMember, SegmentSummary, SegmentView};
use domain::segments::SegmentDefinition;
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "segment_options")]
pub async fn segment_options() -> Result<BuilderOptions, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::options(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_segments")]
pub async fn list_segments() -> Result<Vec<SegmentSummary>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "open_segment")]
pub async fn open_segment(id: Uuid) -> Result<SegmentView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::get(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_segment", input = Json)]
pub async fn create_segment(name: String, definition: SegmentDefinition) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::create(&svc, &actor, &name, &definition).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "update_segment", input = Json)]
pub async fn update_segment(id: Uuid, name: String, definition: SegmentDefinition) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::update(&svc, &actor, id, &name, &definition).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "duplicate_segment")]
pub async fn duplicate_segment(id: Uuid) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::duplicate(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "delete_segment")]
pub async fn delete_segment(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::delete(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "count_segment", input = Json)]
pub async fn count_segment(definition: SegmentDefinition) -> Result<SegmentCount, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::count(&svc, &actor, &definition).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "count_saved_segment")]
pub async fn count_saved_segment(id: Uuid) -> Result<SegmentCount, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::count_saved(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "preview_segment", input = Json)]
pub async fn preview_segment(definition: SegmentDefinition) -> Result<Vec<SegmentMember>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::preview(&svc, &actor, &definition).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "segment_to_list", input = Json)]
pub async fn segment_to_list(list_name: String, definition: SegmentDefinition) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::segments::save_as_list(&svc, &actor, &list_name, &definition).await?)
}
