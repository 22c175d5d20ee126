//! Sending domains as the settings page shows them: the organisation's domains, the DNS records to
//! publish and the result of the last check of each. No secrets: the DKIM private key never leaves
//! the service; only its public half is here, inside the record to publish.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a domain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    /// Added, never verified yet.
    Pending,
    /// Every record checked out: campaigns may send From this domain.
    Verified,
    /// The last check found a record missing or wrong: nothing is sent From this domain.
    Failed,
}

impl DomainStatus {
    pub const ALL: [DomainStatus; 3] = [DomainStatus::Pending, DomainStatus::Verified, DomainStatus::Failed];
    pub fn as_str(self) -> &'static str {
        match self {
            DomainStatus::Pending => "pending",
            DomainStatus::Verified => "verified",
            DomainStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        DomainStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            DomainStatus::Pending => "Not verified yet",
            DomainStatus::Verified => "Verified",
            DomainStatus::Failed => "Not verified: records missing or wrong",
        }
    }
}

/// The three records a sending domain needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Dkim,
    Spf,
    Dmarc,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [RecordKind::Dkim, RecordKind::Spf, RecordKind::Dmarc];
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Dkim => "dkim",
            RecordKind::Spf => "spf",
            RecordKind::Dmarc => "dmarc",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::Dkim => "DKIM",
            RecordKind::Spf => "SPF",
            RecordKind::Dmarc => "DMARC",
        }
    }
}

/// One DNS record to publish (always TXT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub kind: RecordKind,
    /// The fully qualified name, without the final dot (`sel._domainkey.clinic.example`).
    pub name: String,
    /// The TXT value as one string.
    pub value: String,
    /// The same record as a zone-file line (values over 255 characters split into strings).
    pub zone_line: String,
    /// What to know when publishing it.
    pub note: String,
}

/// The result of checking one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheck {
    pub kind: RecordKind,
    pub ok: bool,
    /// Plain words: what was found, what is wrong. Never the full record value.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendingDomainView {
    pub id: Uuid,
    /// The domain in ASCII (A-label) form, as DNS and the From address use it.
    pub domain: String,
    /// The same domain as people read it (U-labels), when it differs.
    pub unicode: Option<String>,
    pub selector: String,
    pub status: DomainStatus,
    pub records: Vec<DnsRecord>,
    pub checks: Vec<RecordCheck>,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}
