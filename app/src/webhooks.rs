//! Server functions for webhooks (Settings → Webhooks): list with the last attempts, register
//! (the signing secret shown once), change, delete, rotate the secret, send a test event. Thin
//! edges: administrators only, validation, the SSRF guard, sealing and auditing live in
//! `service::webhooks`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::webhooks::{CreatedEndpointView, EndpointInput, EndpointView};
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_webhooks")]
pub async fn list_webhooks() -> Result<Vec<EndpointView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::webhooks::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_webhook", input = server_fn::codec::Json)]
pub async fn create_webhook(endpoint: EndpointInput) -> Result<CreatedEndpointView, AppError> {
    let (svc, actor) = ssr::actor()?;
    let c = service::webhooks::create(&svc, &actor, endpoint).await?;
    Ok(CreatedEndpointView { id: c.id, secret: c.secret.to_string() })
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "update_webhook", input = server_fn::codec::Json)]
pub async fn update_webhook(id: Uuid, endpoint: EndpointInput) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::webhooks::update(&svc, &actor, id, endpoint).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "delete_webhook")]
pub async fn delete_webhook(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::webhooks::delete(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "rotate_webhook_secret")]
pub async fn rotate_webhook_secret(id: Uuid) -> Result<CreatedEndpointView, AppError> {
    let (svc, actor) = ssr::actor()?;
    let secret = service::webhooks::rotate_secret(&svc, &actor, id).await?;
    Ok(CreatedEndpointView { id, secret: secret.to_string() })
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "test_webhook")]
pub async fn test_webhook(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    service::webhooks::send_test(&svc, &actor, id).await?;
    Ok(())
}
