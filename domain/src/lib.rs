//! Pure types and rules of Hermetic: no IO, compiles to wasm32 so the UI shares them.
//!
//! Invariants: nothing here reads the clock, the environment or the network; plaintext PHI only ever
//! lives inside [`phi::Phi`].

pub mod access;
pub mod api;
pub mod audit;
pub mod breakdowns;
pub mod campaign_views;
pub mod campaigns;
pub mod contacts;
pub mod delivery;
pub mod disclosure;
pub mod dto;
pub mod email;
pub mod engagement;
pub mod error;
pub mod ids;
pub mod password;
pub mod phi;
pub mod reports;
pub mod template_views;
pub mod templates;
pub mod time_zones;
pub mod webhooks;

pub use access::{Permission, Role};
pub use error::DomainError;
pub use phi::Phi;
pub mod secret;
pub mod segment_views;
pub mod segments;
pub mod sending_domains;
pub mod sequence_report;
pub mod sequences;
