//! Pages. Each page is a component; data comes from server functions in `crate::api`.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod campaigns;
pub mod contacts;
pub mod domains;
pub mod home;
pub mod layout;
pub mod mailbox;
pub mod reports;
pub mod segments;
pub mod sequences;
pub mod settings;
pub mod templates;
pub mod users;
pub mod webhooks;
