//! The `entity` crate keeps in step with the migrated schema: every table of the `public` schema
//! has an entity, no entity names a table that is gone, and each entity has its table's columns.
//! (Migration bookkeeping, `seaql_migrations`, apalis' own schema and the monthly partitions of
//! the event tables, which are their parent's, have none.)

use crate::harness::*;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test]
async fn every_table_has_an_entity_with_its_columns() {
    let db = TestDb::new().await;
    let conn = db.connect().await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.table_name, c.column_name FROM information_schema.columns c
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name <> 'seaql_migrations'
               AND NOT EXISTS (SELECT 1 FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
                               WHERE n.nspname = 'public' AND k.relname = c.table_name AND k.relispartition)",
        ))
        .await
        .unwrap();
    let mut schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        let (table, column): (String, String) = (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap());
        schema.entry(table).or_default().insert(column);
    }
    assert!(schema.len() > 30, "the schema is migrated (sanity): {} tables", schema.len());
    let entities: BTreeMap<String, BTreeSet<String>> = entity::tables()
        .into_iter()
        .map(|(t, cols)| (t.to_string(), cols.into_iter().map(str::to_string).collect()))
        .collect();

    let without_entity: Vec<&String> = schema.keys().filter(|t| !entities.contains_key(*t)).collect();
    assert!(
        without_entity.is_empty(),
        "tables without an entity in the `entity` crate: {without_entity:?} (generate them with sea-orm-cli; see entity/src/lib.rs)"
    );
    let gone: Vec<&String> = entities.keys().filter(|t| !schema.contains_key(*t)).collect();
    assert!(gone.is_empty(), "entities whose table is not in the schema: {gone:?}");
    for (table, columns) in &schema {
        assert_eq!(&entities[table], columns, "the entity of `{table}` does not have its table's columns");
    }
}
