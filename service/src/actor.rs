//! `Actor`: who is calling a service function. Every entry point takes one and calls
//! `actor.require(..)` first; the UI hiding a button is only a convenience.

use crate::error::{ServiceError, ServiceResult};
use domain::ids::{OrganisationId, SessionId, UserId};
use domain::{Permission, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// A signed-in staff member (session fully authenticated, MFA done).
    User { user_id: UserId, session_id: SessionId },
    /// The server itself or an operator at the command line (`server admin …`).
    System { via: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub organisation_id: OrganisationId,
    pub role: Role,
    pub kind: ActorKind,
    /// Client address, recorded in audit rows ("from where").
    pub ip: Option<String>,
}

impl Actor {
    pub fn user(
        organisation_id: OrganisationId,
        role: Role,
        user_id: UserId,
        session_id: SessionId,
        ip: Option<String>,
    ) -> Self {
        Actor { organisation_id, role, kind: ActorKind::User { user_id, session_id }, ip }
    }

    /// An operator or the server acting for an organisation with full rights (CLI, seeding, jobs).
    pub fn system(organisation_id: OrganisationId, via: &'static str) -> Self {
        Actor { organisation_id, role: Role::Admin, kind: ActorKind::System { via }, ip: None }
    }

    pub fn require(&self, p: Permission) -> ServiceResult<()> {
        if self.role.allows(p) { Ok(()) } else { Err(ServiceError::Forbidden) }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
    }

    pub fn user_id(&self) -> Option<UserId> {
        match &self.kind {
            ActorKind::User { user_id, .. } => Some(*user_id),
            ActorKind::System { .. } => None,
        }
    }

    pub fn session_id(&self) -> Option<SessionId> {
        match &self.kind {
            ActorKind::User { session_id, .. } => Some(*session_id),
            ActorKind::System { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_follows_the_role_catalogue() {
        let a = Actor::user(OrganisationId::new(), Role::Analyst, UserId::new(), SessionId::new(), None);
        assert!(matches!(a.require(Permission::ContactsRead), Err(ServiceError::Forbidden)));
        assert!(a.require(Permission::ReportsRead).is_ok());
        assert!(Actor::system(OrganisationId::new(), "cli").require(Permission::UsersManage).is_ok());
    }
}
