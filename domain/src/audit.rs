//! Audit vocabulary: what can be recorded and how it is shown. Audit rows carry ids only, never PHI.

use serde::{Deserialize, Serialize};

macro_rules! actions {
    ($($variant:ident => $code:literal, $label:literal;)*) => {
        /// Every auditable action. The code is stored; changing a code breaks old rows' meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AuditAction { $($variant),* }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),*];
            pub fn code(self) -> &'static str {
                match self { $(AuditAction::$variant => $code),* }
            }
            pub fn label(self) -> &'static str {
                match self { $(AuditAction::$variant => $label),* }
            }
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some(AuditAction::$variant),)* _ => None }
            }
        }
    };
}

actions! {
    LoginPasswordAccepted => "auth.login.password_ok", "Password accepted (MFA pending)";
    LoginFailed => "auth.login.failed", "Sign-in failed";
    LoginThrottled => "auth.login.throttled", "Sign-in throttled";
    MfaSucceeded => "auth.mfa.ok", "Signed in with MFA";
    MfaFailed => "auth.mfa.failed", "MFA code rejected";
    MfaReplayed => "auth.mfa.replayed", "Reused MFA code rejected";
    MfaRecoveryCodeUsed => "auth.mfa.recovery_code_used", "Signed in with a recovery code";
    MfaEnrolled => "auth.mfa.enrolled", "MFA enrolled";
    MfaReset => "auth.mfa.reset", "MFA reset";
    Logout => "auth.logout", "Signed out";
    SessionExpired => "auth.session.expired", "Session expired";
    PasswordChanged => "auth.password.changed", "Password changed";
    UserCreated => "user.created", "User created";
    UserInvited => "user.invited", "User invited";
    InviteAccepted => "user.invite_accepted", "Invitation accepted";
    InviteResent => "user.invite_resent", "Invitation sent again";
    InviteRevoked => "user.invite_revoked", "Invitation revoked";
    RoleChanged => "user.role_changed", "Role changed";
    UserDisabled => "user.disabled", "User disabled";
    UserEnabled => "user.enabled", "User enabled";
    OrganisationCreated => "org.created", "Organisation created";
    AuditViewed => "audit.viewed", "Audit trail viewed";
    ContactCreated => "contact.created", "Contact created";
    ContactUpdated => "contact.updated", "Contact updated";
    ContactDeleted => "contact.deleted", "Contact deleted";
    ContactViewed => "contact.viewed", "Contact viewed (PHI read)";
    ContactsListed => "contacts.listed", "Contacts listed (PHI read)";
    ContactsExported => "contacts.exported", "Contacts exported (PHI read)";
    ImportUploaded => "import.uploaded", "Import file uploaded";
    ImportPreviewed => "import.previewed", "Import file previewed (PHI read)";
    ImportStarted => "import.started", "Import started";
    ImportFinished => "import.finished", "Import finished";
    ImportCancelled => "import.cancelled", "Import cancelled";
    ImportExpired => "import.expired", "Upload never started: file deleted after a day";
    FieldCreated => "field.created", "Custom field created";
    FieldDeleted => "field.deleted", "Custom field deleted";
    ListCreated => "list.created", "List created";
    ListUpdated => "list.updated", "List updated";
    ListDeleted => "list.deleted", "List deleted";
    ListMembersChanged => "list.members_changed", "List membership changed";
    OptInConfirmed => "list.optin_confirmed", "Double opt-in confirmed";
    SuppressionAdded => "suppression.added", "Address suppressed";
    SuppressionRemoved => "suppression.removed", "Suppression removed";
    ConsentRecorded => "consent.recorded", "Consent recorded";
    RootKeyRotated => "keys.root_rotated", "Root key rotated";
    DataKeyRotationStarted => "keys.data_rotation_started", "Data key rotation started";
    DataKeyRotated => "keys.data_rotated", "Data key rotation finished";
    OrganisationDeleted => "org.deleted", "Organisation deleted (keys destroyed)";
    DevMailboxViewed => "mail.dev_mailbox_viewed", "Dev mailbox viewed (PHI read)";
    AuditVerified => "audit.verified", "Audit chain verified";
    TemplateCreated => "template.created", "Template created";
    TemplateSaved => "template.saved", "Template version saved";
    TemplateRenamed => "template.renamed", "Template renamed";
    TemplateArchived => "template.archived", "Template archived";
    TemplatePreviewedForContact => "template.previewed_for_contact", "Template previewed with a contact (PHI read)";
    TemplateTestSent => "template.test_sent", "Template test sent";
    RecipientUnsubscribed => "recipient.unsubscribed", "Recipient unsubscribed by link";
    ConsentGrantedByRecipient => "recipient.consent_granted", "Recipient opted in on the preferences page";
    SegmentCreated => "segment.created", "Segment created";
    SegmentUpdated => "segment.updated", "Segment changed";
    SegmentDeleted => "segment.deleted", "Segment deleted";
    SegmentCountedWithPhi => "segment.counted_phi", "Segment counted using PHI conditions";
    SegmentPreviewed => "segment.previewed", "Segment members previewed (PHI read)";
    SegmentSavedAsList => "segment.saved_as_list", "Segment saved as a static list";
    SegmentCountThrottled => "segment.count_throttled", "Segment count refused: too many counts that decrypt";
    SegmentsSealed => "segment.legacy_sealed", "Plaintext PHI values in saved segments sealed";
    CampaignCreated => "campaign.created", "Campaign created";
    CampaignUpdated => "campaign.updated", "Campaign changed";
    CampaignDeleted => "campaign.deleted", "Campaign deleted";
    CampaignScheduled => "campaign.scheduled", "Campaign scheduled";
    CampaignUnscheduled => "campaign.unscheduled", "Campaign schedule withdrawn";
    CampaignLaunched => "campaign.launched", "Campaign launched";
    CampaignPaused => "campaign.paused", "Campaign paused";
    CampaignAutoPaused => "campaign.auto_paused", "Campaign paused automatically after sending errors";
    CampaignResumed => "campaign.resumed", "Campaign resumed";
    CampaignCancelled => "campaign.cancelled", "Campaign cancelled";
    CampaignCompleted => "campaign.completed", "Campaign finished sending";
    CampaignTestSent => "campaign.test_sent", "Campaign test sent to the signed-in user";
    SendingDomainAdded => "sending_domain.added", "Sending domain added (DKIM key generated)";
    SendingDomainChecked => "sending_domain.checked", "Sending domain DNS records checked";
    SendingDomainRemoved => "sending_domain.removed", "Sending domain removed (DKIM key destroyed)";
    ApiKeyCreated => "api_key.created", "API key created";
    ApiKeyRevoked => "api_key.revoked", "API key revoked";
    ApiKeyRefused => "api_key.refused", "API request refused (revoked, expired or badly signed key)";
    EventRecorded => "event.recorded", "Patient events recorded";
    EventPropertiesViewed => "event.properties_viewed", "Patient event properties viewed (PHI read)";
    WebhookCreated => "webhook.created", "Webhook endpoint registered";
    WebhookChanged => "webhook.changed", "Webhook endpoint changed";
    WebhookDeleted => "webhook.deleted", "Webhook endpoint deleted";
    WebhookSecretRotated => "webhook.secret_rotated", "Webhook signing secret rotated";
    WebhookDisabled => "webhook.disabled", "Webhook endpoint disabled (it answered 410 Gone)";
    CampaignPausedForDomain => "campaign.paused_sending_domain", "Campaign paused: its From domain is not verified";
    SequenceCreated => "sequence.created", "Sequence created";
    SequenceSaved => "sequence.saved", "Sequence draft saved";
    SequencePublished => "sequence.published", "Sequence version published";
    SequenceStatusChanged => "sequence.status_changed", "Sequence paused, resumed or archived";
    SequenceEnrolmentRemoved => "sequence.enrolment_removed", "Contact removed from a sequence";
    SequenceContactEnrolled => "sequence.contact_enrolled", "Contact enrolled in a sequence by hand or by an integration";
    SequenceEnrolmentsViewed => "sequence.enrolments_viewed", "Sequence enrolments listed (contact ids)";
    ReportTimeZoneChanged => "org.report_time_zone_changed", "Report time zone changed";
    ReportsExported => "reports.exported", "Report exported";
}

/// Whether the recorded attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Failure,
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(AuditOutcome::Success),
            "failure" => Some(AuditOutcome::Failure),
            "denied" => Some(AuditOutcome::Denied),
            _ => None,
        }
    }
}

/// One audit row as the admin page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryView {
    pub seq: i64,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub action: String,
    pub action_label: String,
    pub outcome: String,
    pub actor_user_id: Option<uuid::Uuid>,
    pub actor_email: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub details: String,
}

/// Filters on the audit page. All optional; `before_seq` pages backwards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_user_id: Option<uuid::Uuid>,
    pub outcome: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub before_seq: Option<i64>,
    pub limit: Option<u32>,
}

/// A page of audit rows, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    pub next_before_seq: Option<i64>,
}

/// The result of walking a hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainReport {
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub rows_checked: i64,
    /// `None` when every link holds; otherwise the first row whose link is broken and why.
    pub first_broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokenLink {
    pub seq: i64,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.code()), "duplicate code {}", a.code());
            assert_eq!(AuditAction::from_code(a.code()), Some(*a));
        }
    }
}
