//! The application: use cases, crypto, repositories, audit. No axum, no leptos: edges (server
//! functions, HTTP handlers, job workers) call in here, and every entry point authorises its actor.

pub mod actor;
pub mod api;
pub mod audit;
pub mod auth;
pub mod campaigns;
pub mod clock;
pub mod config;
pub mod contacts;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
pub mod home;
pub mod links;
pub mod mail;
pub mod maintenance;
pub mod metrics;
pub mod organisations;
pub mod outbound;
pub mod outbox;
pub mod pgcopy;
pub mod recipient;
pub mod reports;
pub mod segments;
pub mod sending_domains;
pub mod sequences;
pub mod services;
pub mod templates;
pub mod users;
pub mod webhooks;

pub use actor::Actor;
pub use error::{ServiceError, ServiceResult};
pub use services::{AuthSettings, Services, Settings};
