//! The demo organisation's sequences (`server admin seed-sequences`, run by `scripts/dev`) and
//! sample patient events that move demo patients through them (`server admin demo-events`), so a
//! new user sees enrolments move. Everything goes through the same service functions the app and
//! the API use; nothing here is reachable from a request.

use crate::actor::Actor;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use domain::Phi;
use domain::contacts::{ConsentPurpose, ContactInput, FieldValue};
use domain::ids::OrganisationId;
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

const FOOTER: &str = "<p style=\"color:#666;font-size:12px\">Lakeside Health · <a href=\"{{links.preferences}}\">Email preferences</a> · <a href=\"{{links.unsubscribe}}\">Unsubscribe</a></p>";

/// A demo template with `body` (created once, by name), saved so it can be published.
pub async fn template(svc: &Services, actor: &Actor, name: &str, subject: &str, body: &str) -> ServiceResult<Uuid> {
    let existing = crate::templates::store::list(svc, actor).await?;
    if let Some(t) = existing.iter().find(|t| t.name == name) {
        return Ok(t.id);
    }
    let id = crate::templates::store::create(svc, actor, name, None).await?;
    let content: domain::template_views::TemplateContent = serde_json::from_value(json!({
        "mode": "html", "subject": subject, "preheader": "", "design": {"blocks": []},
        "html": format!("<html><body><p>Dear {{{{default contact.first_name \"patient\"}}}},</p>{body}{FOOTER}</body></html>"),
        "text": "", "text_edited": false
    }))
    .map_err(|_| ServiceError::internal("demo template"))?;
    let latest = crate::templates::store::editor(svc, actor, id, None).await?.version;
    crate::templates::store::save(svc, actor, id, latest, content).await?;
    Ok(id)
}

/// Create (once) the demo templates and the two demo sequences, "Appointment reminders" and
/// "Post-visit survey", and publish them when the organisation has a verified sending domain.
/// Returns each sequence's name and whether it is live.
pub async fn seed(svc: &Services, org: OrganisationId) -> ServiceResult<Vec<(String, bool)>> {
    let actor = Actor::system(org, "demo");
    let confirm = template(
        svc,
        &actor,
        "Appointment confirmation",
        "Your appointment is booked",
        "<p>Your appointment at {{event.clinic}} is booked for {{date event.appointment_at \"%A %B %-d at %-I:%M %p\"}}.</p>",
    )
    .await?;
    let remind = template(
        svc,
        &actor,
        "Appointment reminder",
        "See you soon",
        "<p>A reminder: your appointment at {{event.clinic}} is on {{date event.appointment_at \"%A %B %-d at %-I:%M %p\"}}.</p><p><a href=\"https://lakeside.example/directions\">Directions and parking</a></p>",
    )
    .await?;
    let survey = template(
        svc,
        &actor,
        "Visit survey",
        "How was your visit?",
        "<p>Thank you for visiting us. Two minutes of your time helps us care better.</p><p><a href=\"https://lakeside.example/survey\">Take the survey</a></p>",
    )
    .await?;
    let nudge = template(
        svc,
        &actor,
        "Survey reminder",
        "Still two minutes?",
        "<p>We would still love to hear how your visit went.</p><p><a href=\"https://lakeside.example/survey\">Take the survey</a></p>",
    )
    .await?;
    let reminders = json!({
        "version": 1,
        "trigger": {"kind": "event", "event_type": "appointment.booked"},
        "entry": "every_time",
        "correlation_key": "appointment_id",
        "goal": {"event_type": "appointment.completed", "correlated": true},
        "exit_on": [{"event_type": "appointment.cancelled", "correlated": true}],
        "start": "confirm",
        "steps": [
            {"id": "confirm", "name": "Confirmation", "kind": "send_email", "template": confirm, "purpose": "transactional", "next": "two-days"},
            {"id": "two-days", "name": "Two days before", "kind": "wait", "wait": {"kind": "until_event_time", "property": "appointment_at", "offset_minutes": -2880}, "next": "remind"},
            {"id": "remind", "name": "Reminder", "kind": "send_email", "template": remind, "purpose": "care_communications", "next": "evening"},
            {"id": "evening", "name": "The evening before", "kind": "wait", "wait": {"kind": "until_event_time", "property": "appointment_at", "offset_minutes": -900}, "next": "last-call"},
            {"id": "last-call", "name": "Evening reminder", "kind": "send_email", "template": remind, "purpose": "care_communications", "next": null}
        ]
    });
    let survey_def = json!({
        "version": 1,
        "trigger": {"kind": "event", "event_type": "visit.completed"},
        "entry": "one_at_a_time",
        "goal": {"event_type": "survey.completed"},
        "quiet_hours": {"from_hour": 21, "to_hour": 8},
        "start": "next-day",
        "steps": [
            {"id": "next-day", "name": "A day later", "kind": "wait", "wait": {"kind": "duration", "minutes": 1440}, "next": "survey"},
            {"id": "survey", "name": "Survey", "kind": "send_email", "template": survey, "purpose": "marketing", "next": "clicked"},
            {"id": "clicked", "name": "Clicked?", "kind": "wait_for", "event": {"kind": "clicked", "step": "survey"}, "timeout_minutes": 4320, "on_event": null, "on_timeout": "nudge"},
            {"id": "nudge", "name": "Nudge", "kind": "send_email", "template": nudge, "purpose": "marketing", "next": null}
        ]
    });
    let domain = crate::sending_domains::verified_names(svc.db(), org).await?.into_iter().next();
    let from_email = domain.as_ref().map(|d| format!("care@{d}")).unwrap_or_default();
    let existing = super::list(svc, &actor).await?;
    let mut out = Vec::new();
    for (name, def) in [("Appointment reminders", reminders), ("Post-visit survey", survey_def)] {
        let id = match existing.iter().find(|s| s.name == name) {
            Some(s) => s.id,
            None => {
                let id = super::create(svc, &actor, name).await?;
                let input = super::DraftInput {
                    name: name.into(),
                    from_name: "Lakeside Health".into(),
                    from_email: from_email.clone(),
                    definition: serde_json::from_value(def).map_err(|_| ServiceError::internal("demo sequence"))?,
                };
                super::save_draft(svc, &actor, id, &input).await?;
                id
            }
        };
        let view = super::get(svc, &actor, id).await?;
        let live = match view.status {
            domain::sequences::SequenceStatus::Draft if domain.is_some() => {
                super::publish(svc, &actor, id, &[]).await?;
                true
            }
            s => s == domain::sequences::SequenceStatus::Active,
        };
        out.push((name.to_string(), live));
    }
    Ok(out)
}

/// Record sample events for a few demo patients (created once, with marketing and care
/// consent): appointments booked three days ahead, one cancelled, visits completed.
pub async fn post_events(svc: &Services, org: OrganisationId, patients: usize) -> ServiceResult<usize> {
    let actor = Actor::system(org, "demo");
    let names = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan", "Kendall", "Logan"];
    let now = svc.clock().now();
    let mut recorded = 0;
    for (i, name) in names.iter().enumerate().take(patients.clamp(1, names.len())) {
        let email = format!("{}@demo-patients.example", name.to_lowercase());
        let mut fields = BTreeMap::new();
        fields.insert("email".to_string(), Phi::new(email.clone()));
        fields.insert("first_name".to_string(), Phi::new(name.to_string()));
        let contact = match crate::contacts::create(svc, &actor, ContactInput { fields }).await {
            Ok(id) => {
                for purpose in [ConsentPurpose::Marketing, ConsentPurpose::CareCommunications] {
                    crate::contacts::consent::record(svc, &actor, id, purpose, true, Some("Demo patient")).await?;
                }
                id
            }
            // Already there from an earlier run: find it by its address.
            Err(ServiceError::Invalid(_)) | Err(ServiceError::Conflict(_)) => {
                let key = crate::contacts::bidx_key(svc, svc.db(), org).await?;
                crate::db::scalar::<Uuid, _>(
                    svc.db(),
                    "SELECT id FROM contact WHERE organisation_id = $1 AND email_bidx = $2",
                    [org.0.into(), crate::contacts::email_bidx(&key, &email).into()],
                )
                .await?
                .ok_or(ServiceError::NotFound)?
            }
            Err(e) => return Err(e),
        };
        let appointment = format!("DEMO-{}-{}", now.timestamp(), i);
        let at = (now + chrono::Duration::days(3) + chrono::Duration::hours(i as i64)).to_rfc3339();
        let booked = BTreeMap::from([
            ("appointment_id".to_string(), FieldValue::Text(appointment.clone())),
            ("appointment_at".to_string(), FieldValue::Text(at)),
            ("clinic".to_string(), FieldValue::Text("Lakeside Cardiology, 2nd floor".into())),
            ("department".to_string(), FieldValue::Text("cardiology".into())),
        ]);
        crate::events::record(svc, &actor, contact, "appointment.booked", &Phi::new(booked), now).await?;
        recorded += 1;
        if i % 4 == 3 {
            let cancelled = BTreeMap::from([("appointment_id".to_string(), FieldValue::Text(appointment))]);
            crate::events::record(svc, &actor, contact, "appointment.cancelled", &Phi::new(cancelled), now).await?;
            recorded += 1;
        }
        if i % 2 == 0 {
            crate::events::record(svc, &actor, contact, "visit.completed", &Phi::new(BTreeMap::new()), now).await?;
            recorded += 1;
        }
    }
    Ok(recorded)
}
