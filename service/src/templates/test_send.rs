//! Test sends of a template (the editor's current content, synthetic data) to the signed-in
//! user's own address, composed by `crate::outbound`, and the per-user limit shared with campaign
//! test sends.

use super::merge::{merge_data, organisation_name, synthetic_contact, with_samples};
use super::sandbox::MergeFields;
use super::store::{prepare, template_exists};
use crate::actor::Actor;
use crate::audit::{self, AuditRecord};
use crate::contacts::fields;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::links::{self, LinkKind, LinkSubject};
use crate::mail::{self, SendOutcome};
use crate::outbound;
use crate::services::Services;
use domain::audit::AuditAction;
use domain::template_views::TemplateContent;
use domain::{Permission, Phi};
use uuid::Uuid;

/// Test sends allowed per user in `TEST_SEND_WINDOW_MINUTES`.
pub const TEST_SENDS_PER_WINDOW: i64 = 10;
pub const TEST_SEND_WINDOW_MINUTES: i64 = 10;
/// Send the editor's current content, personalised with synthetic data, to the signed-in user's
/// own address through the configured transport (the path campaigns use). Returns a short status.
pub async fn test_send(svc: &Services, actor: &Actor, id: Uuid, content: TemplateContent) -> ServiceResult<String> {
    actor.require(Permission::TemplatesWrite)?;
    let org = actor.organisation_id;
    let user = actor.user_id().ok_or(ServiceError::Forbidden)?;
    template_exists(svc, org, id).await?;
    let now = svc.clock().now();
    test_send_allowed(svc, user, now).await?;
    let catalogue = fields::catalogue(svc, svc.db(), org).await?;
    let fields = MergeFields::new(&catalogue);
    let p = prepare(svc, &content, &fields)?;
    let to = own_address(svc, user, org).await?;
    let subject = LinkSubject::Test { user: user.0, message: id };
    let links = links::links_json(svc, org, subject, now).await?;
    let unsubscribe =
        links::url(svc, LinkKind::Unsubscribe, &links::token(svc, org, LinkKind::Unsubscribe, subject, now).await?);
    let org_name = organisation_name(svc, org).await?;
    // Like every message of the organisation, a test goes From its own verified sending domain
    // (the first verified), signed with that domain's key.
    let from = {
        let names = crate::sending_domains::verified_names(svc.db(), org).await?;
        let domain = names.first().ok_or_else(|| {
            ServiceError::invalid(
                "from",
                "test sends go From your organisation's verified sending domain, and it has none yet: an \
                 administrator adds and verifies one under Settings → Sending domains",
            )
        })?;
        let (_, local) = crate::sending_domains::default_local_part(svc);
        let address = format!("{local}@{domain}")
            .parse::<lettre::Address>()
            .map_err(|_| ServiceError::internal("the test sender's address is invalid"))?;
        lettre::message::Mailbox::new(Some(org_name.clone()), address)
    };
    let sender = outbound::Sender::verified(svc, org, "from", from, None).await?;
    let data = with_samples(merge_data(synthetic_contact(&catalogue), &org_name, links), &p.checked);
    let content = outbound::render(svc, &p.checked, data)?;
    let m = outbound::compose(&sender, &Phi::new(to), content, &outbound::Kind::Test { unsubscribe }, None)?;
    let outcome = outbound::send_now(svc, org, &sender, m).await?;
    test_send_result(svc, actor, AuditAction::TemplateTestSent, "template", id, outcome).await
}

/// Test sends (of templates and campaigns) are limited per user: `TEST_SENDS_PER_WINDOW` in
/// `TEST_SEND_WINDOW_MINUTES`, counted from the audit trail.
pub(crate) async fn test_send_allowed(
    svc: &Services,
    user: domain::ids::UserId,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<()> {
    let recent = db::one_as::<db::Count, _>(
        svc.db(),
        "SELECT count(*) AS n FROM audit_event WHERE actor_user_id = $1 AND action IN ($2, $3) AND occurred_at > $4",
        [
            user.0.into(),
            AuditAction::TemplateTestSent.code().into(),
            AuditAction::CampaignTestSent.code().into(),
            (now - chrono::Duration::minutes(TEST_SEND_WINDOW_MINUTES)).into(),
        ],
    )
    .await?
    .map(|r| r.n)
    .unwrap_or(0);
    if recent >= TEST_SENDS_PER_WINDOW {
        return Err(ServiceError::Throttled { retry_after_secs: (TEST_SEND_WINDOW_MINUTES * 60) as u64 });
    }
    Ok(())
}

/// Audit a test send and turn its outcome into the message the user sees.
pub(crate) async fn test_send_result(
    svc: &Services,
    actor: &Actor,
    action: AuditAction,
    target: &'static str,
    id: Uuid,
    outcome: SendOutcome,
) -> ServiceResult<String> {
    let (ok, status) = match &outcome {
        SendOutcome::Accepted(_) => (true, "sent".to_string()),
        SendOutcome::Deferred(code) => (false, format!("the mail server asked us to try later ({code})")),
        SendOutcome::Rejected(code) => (false, format!("the mail server refused it ({code})")),
    };
    audit::record_now(
        svc,
        AuditRecord::by(actor, action).target(target, id).outcome(if ok {
            domain::audit::AuditOutcome::Success
        } else {
            domain::audit::AuditOutcome::Failure
        }),
    )
    .await?;
    if ok {
        Ok(match svc.mailer() {
            mail::Mailer::DevMailbox => "Test sent to your address — captured in the dev mailbox.".into(),
            mail::Mailer::Smtp(_) => "Test sent to your address.".into(),
        })
    } else {
        Err(ServiceError::Conflict(format!("The test was not sent: {status}.").into()))
    }
}

/// The signed-in user's own address: where test sends go (never a contact's).
pub(crate) async fn own_address(
    svc: &Services,
    user: domain::ids::UserId,
    org: domain::ids::OrganisationId,
) -> ServiceResult<String> {
    #[derive(sea_orm::FromQueryResult)]
    struct Email {
        email: String,
    }
    db::one_as::<Email, _>(
        svc.db(),
        "SELECT email FROM app_user WHERE id = $1 AND organisation_id = $2",
        [user.0.into(), org.0.into()],
    )
    .await?
    .map(|r| r.email)
    .ok_or(ServiceError::NotFound)
}
