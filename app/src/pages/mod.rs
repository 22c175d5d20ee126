//! Pages. Each page is a component; data comes from server functions in `crate::api`.

pub mod audit;
pub mod auth;
pub mod home;
pub mod layout;
pub mod settings;
pub mod users;
