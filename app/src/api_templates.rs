//! Server functions for templates: list, starters, create, open, save (autosave), rename,
//! archive, preview and test send. Thin edges: authorisation and auditing happen in `service`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::template_views::{
    PreviewSample, PreviewView, SaveOutcome, StarterView, TemplateContent, TemplateEditor, TemplateSummary,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_templates")]
pub async fn list_templates() -> Result<Vec<TemplateSummary>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::store::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "template_starters")]
pub async fn template_starters() -> Result<Vec<StarterView>, AppError> {
    let (_svc, actor) = ssr::actor()?;
    Ok(service::templates::store::starter_list(&actor)?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_template")]
pub async fn create_template(name: String, starter: String) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::store::create(&svc, &actor, &name, Some(starter.as_str())).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "open_template")]
pub async fn open_template(id: Uuid, version: Option<i32>) -> Result<TemplateEditor, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::store::editor(&svc, &actor, id, version).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "save_template", input = Json)]
pub async fn save_template(id: Uuid, base_version: i32, content: TemplateContent) -> Result<SaveOutcome, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::store::save(&svc, &actor, id, base_version, content).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "rename_template")]
pub async fn rename_template(id: Uuid, name: String) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::store::rename(&svc, &actor, id, &name).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "archive_template")]
pub async fn archive_template(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::store::archive(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "preview_template", input = Json)]
pub async fn preview_template(
    id: Uuid,
    content: TemplateContent,
    sample: PreviewSample,
) -> Result<PreviewView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::preview::preview(&svc, &actor, id, content, sample).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "test_send_template", input = Json)]
pub async fn test_send_template(id: Uuid, content: TemplateContent) -> Result<String, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::templates::test_send::test_send(&svc, &actor, id, content).await?)
}
