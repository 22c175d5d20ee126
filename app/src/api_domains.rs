//! Server functions for sending domains (Settings → Sending domains): list, add, verify, remove.
//! Thin edges: authorisation (administrators), DNS checks and auditing happen in
//! `service::sending_domains`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::sending_domains::SendingDomainView;
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_sending_domains")]
pub async fn list_sending_domains() -> Result<Vec<SendingDomainView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sending_domains::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "add_sending_domain")]
pub async fn add_sending_domain(domain: String) -> Result<SendingDomainView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sending_domains::add(&svc, &actor, &domain).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "verify_sending_domain")]
pub async fn verify_sending_domain(id: Uuid) -> Result<SendingDomainView, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sending_domains::verify(&svc, &actor, id).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "remove_sending_domain")]
pub async fn remove_sending_domain(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::sending_domains::remove(&svc, &actor, id).await?)
}
