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
    /// An organisation's API key (`/api/v1`): holds exactly the permissions of its scopes.
    ApiKey { key_id: uuid::Uuid, permissions: Vec<Permission> },
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

    /// An API key of an organisation with the permissions its scopes grant. The role is the
    /// ceiling (an administrator's), the scopes the grant: a key can do exactly what both allow.
    pub fn api_key(
        organisation_id: OrganisationId,
        key_id: uuid::Uuid,
        permissions: Vec<Permission>,
        ip: Option<String>,
    ) -> Self {
        Actor { organisation_id, role: Role::Admin, kind: ActorKind::ApiKey { key_id, permissions }, ip }
    }

    pub fn require(&self, p: Permission) -> ServiceResult<()> {
        if self.can(p) { Ok(()) } else { Err(ServiceError::Forbidden) }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
            && match &self.kind {
                ActorKind::ApiKey { permissions, .. } => permissions.contains(&p),
                ActorKind::User { .. } | ActorKind::System { .. } => true,
            }
    }

    /// The API key acting, if this actor is one.
    pub fn api_key_id(&self) -> Option<uuid::Uuid> {
        match &self.kind {
            ActorKind::ApiKey { key_id, .. } => Some(*key_id),
            _ => None,
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        match &self.kind {
            ActorKind::User { user_id, .. } => Some(*user_id),
            ActorKind::System { .. } | ActorKind::ApiKey { .. } => None,
        }
    }

    pub fn session_id(&self) -> Option<SessionId> {
        match &self.kind {
            ActorKind::User { session_id, .. } => Some(*session_id),
            ActorKind::System { .. } | ActorKind::ApiKey { .. } => None,
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

    #[test]
    fn a_key_holds_exactly_its_scopes() {
        let perms = domain::api::permissions(&[domain::api::Scope::EventsWrite]);
        let k = Actor::api_key(OrganisationId::new(), uuid::Uuid::now_v7(), perms, None);
        assert!(k.require(Permission::EventsWrite).is_ok());
        for p in Permission::ALL.into_iter().filter(|p| *p != Permission::EventsWrite) {
            assert!(matches!(k.require(p), Err(ServiceError::Forbidden)), "{p:?}");
        }
        assert!(k.user_id().is_none() && k.session_id().is_none() && k.api_key_id().is_some());
    }
}
