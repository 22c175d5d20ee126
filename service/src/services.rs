//! `Services`: the handle every use case receives — database, key ring, clock and settings. Cheap to
//! clone (one `Arc`); built once at start by the server binary or by a test.

use crate::clock::Clock;
pub use crate::config::{AuthSettings, Settings};
use crate::crypto::keyring::KeyRing;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

pub struct Inner {
    pub db: DatabaseConnection,
    pub mailer: crate::mail::transport::Mailer,
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub settings: Settings,
    pub templates: crate::templates::engine::Engine,
    /// Bounds the argon2 computations running at once (memory: 46 MiB each).
    pub hashing: crate::auth::hashing::HashGate,
}

#[derive(Clone)]
pub struct Services(Arc<Inner>);

impl Services {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        keys: KeyRing,
        settings: Settings,
    ) -> crate::ServiceResult<Self> {
        let mailer = crate::mail::transport::Mailer::build(&settings.mail)?;
        let hashing = crate::auth::hashing::HashGate::new(settings.auth.hash_concurrency, settings.auth.hash_wait);
        Ok(Services(Arc::new(Inner {
            db,
            mailer,
            clock,
            keys,
            settings,
            templates: crate::templates::engine::Engine::default(),
            hashing,
        })))
    }
    pub fn mailer(&self) -> &crate::mail::transport::Mailer {
        &self.0.mailer
    }
    pub fn db(&self) -> &DatabaseConnection {
        &self.0.db
    }
    pub fn clock(&self) -> &dyn Clock {
        self.0.clock.as_ref()
    }
    pub fn keys(&self) -> &KeyRing {
        &self.0.keys
    }
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
    /// The template sandbox and compiled-version cache.
    pub fn templates(&self) -> &crate::templates::engine::Engine {
        &self.0.templates
    }
    /// The password-hashing gate (its gauges are read by tests and benchmarks).
    pub fn hashing(&self) -> &crate::auth::hashing::HashGate {
        &self.0.hashing
    }
    pub fn auth(&self) -> &AuthSettings {
        &self.0.settings.auth
    }
}
