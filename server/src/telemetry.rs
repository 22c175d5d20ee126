//! Logging. Log lines carry ids, routes, statuses and timings — never PHI or secrets: values from
//! requests are not logged, and errors are logged through `ServiceError::log_detail`.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("HERMETIC_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},sqlx=warn,sea_orm=warn,apalis=warn,apalis_postgres=warn,hyper=warn,tower=warn"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
