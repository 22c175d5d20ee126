//! Roles and the permission catalogue. The service layer checks these on every call
//! (`actor.require(Permission::X)`); the UI only uses them to hide what would be refused anyway.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A staff member's role inside one organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, settings, exports and the audit trail; can do everything a marketer can.
    Admin,
    /// Builds contacts, segments, templates, campaigns and sequences.
    Marketer,
    /// Reads aggregate reports; never sees a contact's PHI.
    Analyst,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Marketer, Role::Analyst];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Administrator",
            Role::Marketer => "Marketer",
            Role::Analyst => "Analyst",
        }
    }

    /// The permission catalogue: one place that says who may do what.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Marketer => !matches!(p, UsersManage | AuditRead | SettingsManage | ContactsExport),
            Role::Analyst => {
                matches!(p, OwnAccount | ReportsRead | CampaignsRead | SegmentsCount | TemplatesRead | SequencesRead)
            }
        }
    }

    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL.iter().copied().filter(|p| self.allows(*p)).collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "marketer" => Ok(Role::Marketer),
            "analyst" => Ok(Role::Analyst),
            _ => Err(crate::DomainError::invalid("role", "must be admin, marketer or analyst")),
        }
    }
}

/// Everything a signed-in actor can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Manage one's own password, MFA and sessions. Every role has it.
    OwnAccount,
    /// Invite users, change roles, disable accounts, reset MFA.
    UsersManage,
    /// Browse and verify the audit trail.
    AuditRead,
    /// Organisation settings (sending domains, keys).
    SettingsManage,
    /// Read contacts including PHI (an audited read).
    ContactsRead,
    /// Create, edit and delete contacts, lists and custom fields; import CSV.
    ContactsWrite,
    /// Export contacts as CSV (admin only, audited).
    ContactsExport,
    /// See segment definitions and match counts (no member rows).
    SegmentsCount,
    /// Build segments and preview their members (an audited PHI read).
    SegmentsWrite,
    TemplatesRead,
    TemplatesWrite,
    CampaignsRead,
    CampaignsWrite,
    SequencesRead,
    SequencesWrite,
    ReportsRead,
    /// Record patient events (the event API; staff record them on a contact's page).
    EventsWrite,
    /// Send a transactional message to one contact (the message API).
    MessagesSend,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::OwnAccount,
        Permission::UsersManage,
        Permission::AuditRead,
        Permission::SettingsManage,
        Permission::ContactsRead,
        Permission::ContactsWrite,
        Permission::ContactsExport,
        Permission::SegmentsCount,
        Permission::SegmentsWrite,
        Permission::TemplatesRead,
        Permission::TemplatesWrite,
        Permission::CampaignsRead,
        Permission::CampaignsWrite,
        Permission::SequencesRead,
        Permission::SequencesWrite,
        Permission::ReportsRead,
        Permission::EventsWrite,
        Permission::MessagesSend,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyst_never_reads_contacts_or_admin_areas() {
        for p in [
            Permission::ContactsRead,
            Permission::ContactsWrite,
            Permission::ContactsExport,
            Permission::SegmentsWrite,
            Permission::UsersManage,
            Permission::AuditRead,
        ] {
            assert!(!Role::Analyst.allows(p), "{p:?}");
        }
        assert!(Role::Analyst.allows(Permission::ReportsRead));
    }

    #[test]
    fn marketer_cannot_administer_or_export() {
        assert!(!Role::Marketer.allows(Permission::UsersManage));
        assert!(!Role::Marketer.allows(Permission::AuditRead));
        assert!(!Role::Marketer.allows(Permission::ContactsExport));
        assert!(Role::Marketer.allows(Permission::ContactsRead));
    }

    #[test]
    fn every_role_manages_its_own_account_and_admin_has_all() {
        for r in Role::ALL {
            assert!(r.allows(Permission::OwnAccount));
        }
        assert_eq!(Role::Admin.permissions().len(), Permission::ALL.len());
    }

    #[test]
    fn roles_parse() {
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
