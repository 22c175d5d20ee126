//! sea-orm entities: one module per table, no logic. Column types mirror the SQL in `migration`.

pub mod app_user;
pub mod invite;
pub mod organisation;
pub mod recovery_code;
pub mod user_session;
