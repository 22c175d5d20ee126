//! Schema history. Frozen: a released migration is never edited; changes are new migrations.
//! Each migration is plain SQL in a `.sql` file beside its module, so reviewers read real DDL.

pub use sea_orm_migration::prelude::*;

mod m20260101_000001_foundation;
mod m20260201_000001_contacts;
mod m20261101_000001_templates;
mod m20261201_000001_segments;
mod m20261215_000001_campaigns;
mod m20261216_000001_delivery_due;
mod m20261217_000001_send_writes;
mod m20261218_000001_delivery_indexes;
mod m20261219_000001_send_queue;
mod m20261220_000001_segment_disclosure;
mod m20261221_000001_root_key_state;
mod m20261222_000001_invites_per_organisation;
mod m20261223_000001_import_expiry;
mod m20261223_000002_consent_withdrawals;
mod m20261224_000001_sending_domains;
mod m20261225_000001_delivery_source;
mod m20261226_000001_api;
mod m20261227_000001_api_messages;
mod m20261227_000002_webhooks;
mod m20261228_000001_sequences;
mod m20261228_000002_template_namespaces;
mod m20261229_000001_message_sender;
mod m20261229_000002_sequence_triggers;
mod m20261230_000001_event_property_names;
mod m20261230_000002_sequence_withdrawals;
mod m20261231_000001_report_rollups;
mod m20261231_000002_monthly_partitions;
mod m20261231_000003_report_breakdowns;
mod m20261231_000004_report_capture_sources;
mod m20261231_000005_report_source_day;
mod m20261231_000006_report_first_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_foundation::Migration),
            Box::new(m20260201_000001_contacts::Migration),
            Box::new(m20261101_000001_templates::Migration),
            Box::new(m20261201_000001_segments::Migration),
            Box::new(m20261215_000001_campaigns::Migration),
            Box::new(m20261216_000001_delivery_due::Migration),
            Box::new(m20261217_000001_send_writes::Migration),
            Box::new(m20261218_000001_delivery_indexes::Migration),
            Box::new(m20261219_000001_send_queue::Migration),
            Box::new(m20261220_000001_segment_disclosure::Migration),
            Box::new(m20261221_000001_root_key_state::Migration),
            Box::new(m20261222_000001_invites_per_organisation::Migration),
            Box::new(m20261223_000001_import_expiry::Migration),
            Box::new(m20261223_000002_consent_withdrawals::Migration),
            Box::new(m20261224_000001_sending_domains::Migration),
            Box::new(m20261225_000001_delivery_source::Migration),
            Box::new(m20261226_000001_api::Migration),
            Box::new(m20261227_000001_api_messages::Migration),
            Box::new(m20261227_000002_webhooks::Migration),
            Box::new(m20261228_000001_sequences::Migration),
            Box::new(m20261228_000002_template_namespaces::Migration),
            Box::new(m20261229_000001_message_sender::Migration),
            Box::new(m20261229_000002_sequence_triggers::Migration),
            Box::new(m20261230_000001_event_property_names::Migration),
            Box::new(m20261230_000002_sequence_withdrawals::Migration),
            Box::new(m20261231_000001_report_rollups::Migration),
            Box::new(m20261231_000002_monthly_partitions::Migration),
            Box::new(m20261231_000003_report_breakdowns::Migration),
            Box::new(m20261231_000004_report_capture_sources::Migration),
            Box::new(m20261231_000005_report_source_day::Migration),
            Box::new(m20261231_000006_report_first_index::Migration),
        ]
    }
}

/// The SQL of every migration, in order (for fingerprinting test template databases).
pub const SQL: &[&str] = &[
    include_str!("m20260101_000001_foundation.sql"),
    include_str!("m20260201_000001_contacts.sql"),
    include_str!("m20261101_000001_templates.sql"),
    include_str!("m20261201_000001_segments.sql"),
    include_str!("m20261215_000001_campaigns.sql"),
    include_str!("m20261216_000001_delivery_due.sql"),
    include_str!("m20261217_000001_send_writes.sql"),
    include_str!("m20261218_000001_delivery_indexes.sql"),
    include_str!("m20261219_000001_send_queue.sql"),
    include_str!("m20261220_000001_segment_disclosure.sql"),
    include_str!("m20261221_000001_root_key_state.sql"),
    include_str!("m20261222_000001_invites_per_organisation.sql"),
    include_str!("m20261223_000001_import_expiry.sql"),
    include_str!("m20261223_000002_consent_withdrawals.sql"),
    include_str!("m20261224_000001_sending_domains.sql"),
    include_str!("m20261225_000001_delivery_source.sql"),
    include_str!("m20261226_000001_api.sql"),
    include_str!("m20261227_000001_api_messages.sql"),
    include_str!("m20261227_000002_webhooks.sql"),
    include_str!("m20261228_000001_sequences.sql"),
    include_str!("m20261228_000002_template_namespaces.sql"),
    include_str!("m20261229_000001_message_sender.sql"),
    include_str!("m20261229_000002_sequence_triggers.sql"),
    include_str!("m20261230_000001_event_property_names.sql"),
    include_str!("m20261230_000002_sequence_withdrawals.sql"),
    include_str!("m20261231_000001_report_rollups.sql"),
    include_str!("m20261231_000002_monthly_partitions.sql"),
    include_str!("m20261231_000003_report_breakdowns.sql"),
    include_str!("m20261231_000004_report_capture_sources.sql"),
    include_str!("m20261231_000005_report_source_day.sql"),
    include_str!("m20261231_000006_report_first_index.sql"),
];

/// A short fingerprint of the schema history: changes whenever a migration is added or edited.
pub fn fingerprint() -> String {
    // FNV-1a: stable across builds and platforms (unlike the std hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for sql in SQL {
        for b in sql.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Apply every pending migration. Several processes may start at once (`serve` and `worker`), so the
/// whole run holds an advisory lock inside one transaction.
pub async fn migrate(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    txn.execute_unprepared("SELECT pg_advisory_xact_lock(4848484848)").await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}
