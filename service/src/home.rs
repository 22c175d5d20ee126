//! What the home page shows a marketer next: the getting-started checklist of a new organisation.

use crate::actor::Actor;
use crate::db;
use crate::error::ServiceResult;
use crate::services::Services;
use domain::Permission;
use domain::audit::{AuditAction, AuditOutcome};
use domain::campaign_views::GettingStarted;

/// Which first steps the organisation has taken: contacts added, a sending domain verified, a
/// template created, a test message sent. For the people who take them (campaign writers).
pub async fn getting_started(svc: &Services, actor: &Actor) -> ServiceResult<GettingStarted> {
    actor.require(Permission::CampaignsWrite)?;
    #[derive(sea_orm::FromQueryResult)]
    struct Steps {
        contacts_added: bool,
        sending_domain_verified: bool,
        template_created: bool,
        test_sent: bool,
    }
    let row: Steps = db::one_as(
        svc.db(),
        "SELECT EXISTS (SELECT 1 FROM contact WHERE organisation_id = $1) AS contacts_added,
                EXISTS (SELECT 1 FROM sending_domain WHERE organisation_id = $1 AND status = 'verified') AS sending_domain_verified,
                EXISTS (SELECT 1 FROM template WHERE organisation_id = $1) AS template_created,
                EXISTS (SELECT 1 FROM audit_event WHERE organisation_id = $1 AND action IN ($2, $3) AND outcome = $4) AS test_sent",
        [
            actor.organisation_id.0.into(),
            AuditAction::CampaignTestSent.code().into(),
            AuditAction::TemplateTestSent.code().into(),
            AuditOutcome::Success.as_str().into(),
        ],
    )
    .await?
    .ok_or_else(|| sea_orm::DbErr::RecordNotFound("getting started".into()))?;
    Ok(GettingStarted {
        contacts_added: row.contacts_added,
        sending_domain_verified: row.sending_domain_verified,
        template_created: row.template_created,
        test_sent: row.test_sent,
    })
}
