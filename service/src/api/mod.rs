//! The machine interface's use cases (`/api/v1`): API keys, idempotency, patient events and
//! contacts from integrations, explicit sequence enrolments, the key usage log. The HTTP edge
//! (`server::api`) authenticates, limits and parses; every decision about who may do what is made
//! here, through the same `actor.require(..)` as for people.

pub mod contacts;
pub mod enrolments;
pub mod events;
pub mod idempotency;
pub mod keys;
pub mod messages;
pub mod usage;
