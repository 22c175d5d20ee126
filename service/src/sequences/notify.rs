//! The notify-staff step's email: a member of staff learns that a contact reached a step of a
//! sequence, with the step's fixed note and a link to the enrolment in Hermetic — never who the
//! contact is. Opening the link needs a session that may read contacts, and that read is audited.
//!
//! The engine writes a `StaffNotice` job (ids only) in the transaction that runs the step, so the
//! notice exists exactly when the step ran; the job's idempotency key names the step visit, so a
//! retried step never queues a second one. Sending is system mail (`outbound::send_system`, the
//! platform's From address), at least once like every apalis job: a crash between the server's
//! answer and the job's completion may repeat a notice, which names nobody.

use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::outbound::{self, Outgoing};
use crate::outbox;
use crate::services::Services;
use domain::Phi;
use domain::ids::OrganisationId;
use domain::sequences::{SequenceDefinition, StepKind};
use sea_orm::FromQueryResult;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Email a member of staff about one step visit of one enrolment. Ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffNotice {
    pub organisation_id: Uuid,
    pub enrolment_id: Uuid,
    pub visit: i32,
    pub user_id: Uuid,
}

impl outbox::Job for StaffNotice {
    const QUEUE: &'static str = outbox::queue::STAFF_NOTICE;
    const MAX_ATTEMPTS: i32 = 10;
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("staff-notice:{}:{}", self.enrolment_id, self.visit))
    }
}

/// The notice's words: the sequence, the step, the note and the link. No contact data exists in
/// any of them (the note is the same for every contact; merge fields are refused in it).
pub fn compose(sequence: &str, step: &str, note: &str, link: &str) -> (String, String) {
    let subject = format!("Hermetic: a contact reached \u{201c}{step}\u{201d} in {sequence}");
    let mut text =
        format!("A contact reached the step \u{201c}{step}\u{201d} of the sequence \u{201c}{sequence}\u{201d}.\n\n");
    if !note.trim().is_empty() {
        text.push_str(&format!("Note from the sequence: {}\n\n", note.trim()));
    }
    text.push_str(&format!(
        "See the enrolment (who, and why they are there): {link}\n\n\
         This email names no patient. Opening the link needs your Hermetic sign-in, and the read is recorded.\n"
    ));
    (subject, text)
}

/// Run one notice job.
pub async fn send(svc: &Services, job: &StaffNotice) -> ServiceResult<()> {
    #[derive(FromQueryResult)]
    struct Row {
        sequence_id: Uuid,
        sequence_name: String,
        definition: serde_json::Value,
        step_id: String,
        email: Option<String>,
    }
    let row: Option<Row> = db::one_as(
        svc.db(),
        "SELECT e.sequence_id, s.name AS sequence_name, v.definition, x.step_id,
                (SELECT u.email FROM app_user u WHERE u.id = $3 AND u.organisation_id = e.organisation_id AND u.status = 'active') AS email
         FROM enrolment e
         JOIN sequence s ON s.id = e.sequence_id
         JOIN sequence_version v ON v.id = e.version_id
         JOIN enrolment_step x ON x.enrolment_id = e.id AND x.visit = $2
         WHERE e.id = $1 AND e.organisation_id = $4",
        [job.enrolment_id.into(), job.visit.into(), job.user_id.into(), job.organisation_id.into()],
    )
    .await?;
    let Some(row) = row else {
        // The enrolment was removed (its contact erased): nothing to say.
        return Ok(());
    };
    let Some(email) = row.email else {
        tracing::warn!(enrolment = %job.enrolment_id, user = %job.user_id, "a staff notice's recipient is no longer an active user; not sent");
        return Ok(());
    };
    // The masked copy holds step names and notes (never PHI: they are not masked).
    let def: SequenceDefinition = serde_json::from_value(row.definition)
        .map_err(|_| ServiceError::internal("a published sequence version is malformed"))?;
    let step = def.step(&row.step_id);
    let step_name = step
        .map(|s| if s.name.trim().is_empty() { s.kind.label().to_string() } else { s.name.clone() })
        .unwrap_or_else(|| row.step_id.clone());
    let note = match step.map(|s| &s.kind) {
        Some(StepKind::NotifyStaff { note, .. }) => note.clone(),
        _ => String::new(),
    };
    let link = format!(
        "{}/sequences/{}?enrolment={}",
        svc.settings().public_url.trim_end_matches('/'),
        row.sequence_id,
        job.enrolment_id
    );
    let (subject, text) = compose(&row.sequence_name, &step_name, &note, &link);
    outbound::send_system_job(
        svc,
        Outgoing {
            organisation: OrganisationId(job.organisation_id),
            to: Phi::new(email),
            subject,
            text: Phi::new(text),
            html: None,
        },
        "staff notice",
        job.enrolment_id,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_sequence_step_and_note_and_links_by_id() {
        let (subject, text) =
            compose("Reminders", "Call", "Please call to reschedule", "https://h.example/sequences/1?enrolment=2");
        assert_eq!(subject, "Hermetic: a contact reached \u{201c}Call\u{201d} in Reminders");
        assert!(text.contains("Please call to reschedule"));
        assert!(text.contains("https://h.example/sequences/1?enrolment=2"));
        let (_, plain) = compose("Reminders", "Call", "  ", "https://h.example/x");
        assert!(!plain.contains("Note from the sequence"));
    }
}
