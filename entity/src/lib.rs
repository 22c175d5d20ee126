//! sea-orm entities: one module per table of the migrated `public` schema, no logic. Generated
//! from a migrated database (an integration-test template database will do) with
//! `sea-orm-cli generate entity -u <url> -s public -o <dir> --date-time-crate chrono` (sea-orm-cli
//! 2.0.4, the version of sea-orm), then tidied: timestamps as `DateTimeUtc` (not
//! `DateTimeWithTimeZone`), no `schema_name`, a doc line per table. The integration test `entities` fails when a table has no entity here, or an entity's columns
//! differ from its table's.
//!
//! Migration bookkeeping (`seaql_migrations`) and apalis' own schema have no entities.

pub mod prelude;

/// Declares the entity modules and [`tables`] from one list, so the two cannot disagree.
macro_rules! entities {
    ($($m:ident),* $(,)?) => {
        $(pub mod $m;)*

        /// Every entity's table and column names, for the test that keeps the entities in step
        /// with the migrated schema.
        pub fn tables() -> Vec<(&'static str, Vec<&'static str>)> {
            use sea_orm::{EntityName, IdenStatic, Iterable};
            vec![$(($m::Entity.table_name(), $m::Column::iter().map(|c| c.as_str()).collect())),*]
        }
    };
}

entities!(
    api_idempotency,
    api_key,
    api_message,
    api_message_link,
    api_request,
    app_user,
    audit_event,
    audit_verification,
    campaign,
    campaign_domain_clock,
    campaign_link,
    consent_event,
    consent_withdrawal_kept,
    contact,
    contact_consent,
    contact_field,
    contact_import,
    contact_list,
    delivery,
    delivery_deferral,
    delivery_queue,
    dev_mailbox,
    engagement_event,
    enrolment,
    enrolment_step,
    event_outbox,
    event_property_name,
    import_chunk,
    import_error,
    invite,
    key_rotation,
    list_member,
    login_throttle,
    optin_token,
    organisation,
    patient_event,
    recovery_code,
    report_first,
    report_hour,
    report_link,
    report_org_hour,
    report_pending,
    report_since,
    report_source_day,
    report_split,
    root_key_state,
    segment,
    segment_count_budget,
    sending_domain,
    sequence,
    sequence_segment_check,
    sequence_segment_member,
    sequence_signal,
    sequence_version,
    suppression,
    template,
    template_version,
    user_session,
    webhook_attempt,
    webhook_delivery,
    webhook_endpoint,
    wrapped_key,
);
