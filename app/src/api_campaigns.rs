//! Server functions for campaigns: editor options, list, open, create, update, delete, live
//! audience count, launch/schedule, pause, resume, cancel, withdraw the schedule, test send,
//! progress and report. Thin edges: authorisation and auditing happen in `service::campaigns`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
// Aliased: `#[server]` names its argument structs after the functions (CampaignOptions, …).
use domain::campaign_views::{
    AudienceCount, CampaignOptions as EditorOptions, CampaignProgress as Progress, CampaignReport as Report,
    CampaignSummary, CampaignView, GettingStarted as Checklist,
};
use domain::campaigns::{Audience, CampaignSettings, CampaignStatus};
use domain::contacts::ConsentPurpose;
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "campaign_options")]
pub async fn campaign_options() -> Result<EditorOptions, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::options(&svc, &actor).await?)
}

/// The home page's checklist for a new organisation (for people who send campaigns).
#[server(client = CsrfClient, prefix = "/api", endpoint = "getting_started")]
pub async fn getting_started() -> Result<Checklist, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::home::getting_started(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_campaigns")]
pub async fn list_campaigns() -> Result<Vec<CampaignSummary>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "open_campaign")]
pub async fn open_campaign(id: Uuid) -> Result<CampaignView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::get(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_campaign", input = Json)]
pub async fn create_campaign(settings: CampaignSettings) -> Result<Uuid, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::create(&svc, &actor, &settings).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "update_campaign", input = Json)]
pub async fn update_campaign(id: Uuid, settings: CampaignSettings) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::update(&svc, &actor, id, &settings).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "delete_campaign")]
pub async fn delete_campaign(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::delete(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "count_audience", input = Json)]
pub async fn count_audience(audience: Audience, purpose: ConsentPurpose) -> Result<AudienceCount, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::audience::count(&svc, &actor, &audience, purpose).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "launch_campaign")]
pub async fn launch_campaign(id: Uuid) -> Result<CampaignStatus, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::launch(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "unschedule_campaign")]
pub async fn unschedule_campaign(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::unschedule(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "pause_campaign")]
pub async fn pause_campaign(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::pause(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "resume_campaign")]
pub async fn resume_campaign(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::resume(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "cancel_campaign")]
pub async fn cancel_campaign(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::cancel(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "test_send_campaign")]
pub async fn test_send_campaign(id: Uuid) -> Result<String, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::test_send(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "campaign_progress")]
pub async fn campaign_progress(id: Uuid) -> Result<Progress, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::progress(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "campaign_report")]
pub async fn campaign_report(id: Uuid) -> Result<Report, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::campaigns::report(&svc, &actor, id).await?)
}
