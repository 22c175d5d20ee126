//! Data shapes exchanged between the server functions and the UI (no PHI in this module yet).

use crate::access::{Permission, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The signed-in user as the UI sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub user_id: Uuid,
    pub organisation_id: Uuid,
    pub organisation_name: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub permissions: Vec<Permission>,
    /// Seconds of inactivity before the server ends the session.
    pub idle_timeout_secs: u64,
    /// Seconds before idle logout at which the UI warns.
    pub idle_warning_secs: u64,
}

impl Me {
    pub fn can(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }
}

/// Where the sign-in flow goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInStep {
    /// Password accepted; ask for the TOTP (or a recovery code).
    Mfa,
    /// Password accepted; the account has no MFA yet and must enrol now.
    EnrolMfa,
    /// Fully signed in.
    Done,
}

/// What the enrolment page shows: the secret as a QR code (SVG) and as text for manual entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfaEnrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// Shown once, right after enrolment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Invited,
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invited" => Some(UserStatus::Invited),
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            _ => None,
        }
    }
}

/// A row of the users admin page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub mfa_enrolled: bool,
    pub last_sign_in_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// A pending invitation's link is valid until then (None: no pending link).
    pub invite_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What the admin gets back from an invitation. The link itself went to the invited address by
/// email; the admin never sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteCreated {
    pub user_id: Uuid,
    pub email: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Session status for the idle-logout warning; reading it does not extend the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub authenticated: bool,
    pub idle_remaining_secs: u64,
    pub absolute_remaining_secs: u64,
}

/// One of the signed-in user's sessions on the settings page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_seen_at: chrono::DateTime<chrono::Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}
