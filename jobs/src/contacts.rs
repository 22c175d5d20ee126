//! Contact jobs: CSV imports, double opt-in emails, data-key rotation. Thin adapters to `service`.

use crate::worker::failure;
use apalis::prelude::*;
use service::Services;
use service::contacts::import::ImportJob;
use service::contacts::lists::OptInEmail;
use service::crypto::rotation::RotationJob;
use service::mail::SendOutcome;

pub async fn import(job: ImportJob, svc: Data<Services>) -> Result<(), BoxDynError> {
    tracing::info!(import_id = %job.import_id, "import job started");
    service::contacts::import::process(&svc, job.import_id).await.map_err(|e| {
        tracing::error!(import_id = %job.import_id, error = %e.log_detail(), "import job failed");
        failure(e)
    })
}

pub async fn optin_email(job: OptInEmail, svc: Data<Services>) -> Result<(), BoxDynError> {
    match service::contacts::lists::send_optin(&svc, &job).await.map_err(failure)? {
        SendOutcome::Accepted(_) => Ok(()),
        SendOutcome::Deferred(reply) => {
            tracing::warn!(contact_id = %job.contact_id, reply = %reply, "opt-in email deferred");
            Err(Box::new(std::io::Error::other(format!("deferred: {reply}"))))
        }
        SendOutcome::Rejected(reply) => {
            tracing::warn!(contact_id = %job.contact_id, reply = %reply, "opt-in email rejected");
            Err(Box::new(AbortError::new(std::io::Error::other(format!("rejected: {reply}")))))
        }
    }
}

pub async fn key_rotation(job: RotationJob, svc: Data<Services>) -> Result<(), BoxDynError> {
    let run = service::crypto::rotation::process_data_rotation(&svc, job.rotation_id).await.map_err(failure)?;
    if run.completed {
        tracing::info!(rotation_id = %job.rotation_id, values = run.resealed, "data key rotation finished");
    } else {
        tracing::info!(rotation_id = %job.rotation_id, values = run.resealed, "data key rotation continues later");
    }
    Ok(())
}
