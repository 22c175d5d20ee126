//! The configured transport: the SMTP pool (TLS required) or, without a relay, the dev mailbox.
//! Built once per process and held by `Services`; knows nothing of organisations or features.

use super::smtp::{SmtpPool, SmtpSettings};
use crate::error::{ServiceError, ServiceResult};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum MailSettings {
    Smtp { smtp: SmtpSettings, from: String },
    DevMailbox { from: String },
}

impl MailSettings {
    pub fn from_address(&self) -> &str {
        match self {
            MailSettings::Smtp { from, .. } | MailSettings::DevMailbox { from } => from,
        }
    }
}

/// The configured transport, built once (SMTP connections are pooled).
#[derive(Clone)]
pub enum Mailer {
    Smtp(Arc<SmtpPool>),
    DevMailbox,
}

impl Mailer {
    pub fn build(settings: &MailSettings) -> ServiceResult<Mailer> {
        match settings {
            MailSettings::DevMailbox { .. } => Ok(Mailer::DevMailbox),
            MailSettings::Smtp { smtp, .. } => {
                Ok(Mailer::Smtp(Arc::new(SmtpPool::new(smtp).map_err(ServiceError::internal)?)))
            }
        }
    }
}
