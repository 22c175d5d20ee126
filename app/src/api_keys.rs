//! Server functions for API keys (Settings → API keys): list, create (the secret shown once),
//! revoke. Thin edges: administrators only, hashing, sealing and auditing in `service::api::keys`.

use crate::csrf::CsrfClient;
use crate::error::AppError;
use domain::api::{CreatedKeyView, KeyView, NewKey};
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(client = CsrfClient, prefix = "/api", endpoint = "list_api_keys")]
pub async fn list_api_keys() -> Result<Vec<KeyView>, AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::api::keys::list(&svc, &actor).await?)
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "create_api_key", input = server_fn::codec::Json)]
pub async fn create_api_key(key: NewKey) -> Result<CreatedKeyView, AppError> {
    let (svc, actor) = ssr::actor()?;
    let k = service::api::keys::create(&svc, &actor, key).await?;
    Ok(CreatedKeyView {
        id: k.id,
        secret: k.secret.to_string(),
        signing_secret: k.signing_secret.as_ref().map(|s| s.to_string()),
    })
}

#[server(client = CsrfClient, prefix = "/api", endpoint = "revoke_api_key")]
pub async fn revoke_api_key(id: Uuid) -> Result<(), AppError> {
    let (svc, actor) = ssr::actor()?;
    Ok(service::api::keys::revoke(&svc, &actor, id).await?)
}
