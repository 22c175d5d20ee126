//! Compiles the non-PHI parts of a validated segment tree into a parameterised SQL prefilter.
//!
//! Invariants: no user value is ever written into SQL text — values, field keys and ids are bound
//! parameters; only fixed fragments are concatenated. The prefilter is an over-approximation:
//! every contact the tree matches passes it (a PHI leaf becomes TRUE, a NOT over PHI becomes TRUE),
//! and when the whole tree is free of PHI (`exact`) it matches exactly. Each non-PHI leaf also gets
//! an exact boolean expression, selected as a column so the in-memory stage never re-derives it.

use chrono::{DateTime, NaiveDate, Utc};
use domain::contacts::{BuiltinField, FieldType};
use domain::segments::{Activity, Condition, FieldTest, Node, SegmentField, needs_phi};
use uuid::Uuid;

/// A bound parameter. `$1` is always the organisation.
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Float(f64),
    Int(i32),
    Bool(bool),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    Uuid(Uuid),
    TextArray(Vec<String>),
}

/// A compiled tree.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Boolean SQL over `contact c`, an over-approximation of the tree (exact when `exact`).
    pub prefilter: String,
    pub exact: bool,
    /// Per condition (pre-order): its exact SQL, or `None` when it needs decrypted PHI.
    pub leaf_sql: Vec<Option<String>>,
    pub params: Vec<Param>,
    /// Sealed contact columns the PHI conditions read.
    pub sealed_columns: Vec<&'static str>,
    /// Event types whose (sealed) properties the PHI conditions test.
    pub event_types: Vec<String>,
}

impl Plan {
    pub fn uses_phi(&self) -> bool {
        !self.exact || self.leaf_sql.iter().any(Option::is_none)
    }
}

struct Compiler<'a> {
    fields: &'a [SegmentField],
    now: DateTime<Utc>,
    params: Vec<Param>,
    leaf_sql: Vec<Option<String>>,
    sealed: Vec<&'static str>,
    event_types: Vec<String>,
}

/// The sealed column holding a PHI field (custom PHI fields share `phi_attrs`).
pub fn sealed_column(key: &str) -> &'static str {
    match BuiltinField::from_key(key) {
        Some(BuiltinField::Email) => "email",
        Some(BuiltinField::FirstName) => "first_name",
        Some(BuiltinField::LastName) => "last_name",
        Some(BuiltinField::Phone) => "phone",
        Some(BuiltinField::DateOfBirth) => "date_of_birth",
        _ => "phi_attrs",
    }
}

impl Compiler<'_> {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// The SQL value of a non-PHI field, typed, NULL when absent or of another type.
    fn field_expr(&mut self, f: &SegmentField) -> String {
        match f.key.as_str() {
            "time_zone" => return "c.time_zone".into(),
            "locale" => return "c.locale".into(),
            _ => {}
        }
        let k = self.bind(Param::Text(f.key.clone()));
        match f.field_type {
            FieldType::Text | FieldType::OneOf => {
                format!("(CASE WHEN jsonb_typeof(c.attrs->{k}) = 'string' THEN c.attrs->>{k} END)")
            }
            FieldType::Number => {
                format!("(CASE WHEN jsonb_typeof(c.attrs->{k}) = 'number' THEN (c.attrs->>{k})::float8 END)")
            }
            FieldType::Boolean => {
                format!("(CASE WHEN jsonb_typeof(c.attrs->{k}) = 'boolean' THEN (c.attrs->>{k})::boolean END)")
            }
            FieldType::Date => format!(
                "(CASE WHEN jsonb_typeof(c.attrs->{k}) = 'string' AND (c.attrs->>{k}) ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$' THEN (c.attrs->>{k})::date END)"
            ),
        }
    }

    fn test_sql(&mut self, t: &str, is_text: bool, test: &FieldTest) -> String {
        let today = self.now.date_naive();
        match test {
            FieldTest::IsEmpty if is_text => format!("({t} IS NULL OR {t} = '')"),
            FieldTest::IsEmpty => format!("({t} IS NULL)"),
            FieldTest::IsNotEmpty if is_text => format!("({t} IS NOT NULL AND {t} <> '')"),
            FieldTest::IsNotEmpty => format!("({t} IS NOT NULL)"),
            FieldTest::TextEquals { value } => {
                let v = self.bind(Param::Text(value.to_lowercase()));
                format!("(lower({t}) = {v})")
            }
            FieldTest::TextContains { value } => {
                let v = self.bind(Param::Text(value.to_lowercase()));
                format!("(strpos(lower({t}), {v}) > 0)")
            }
            FieldTest::TextStartsWith { value } => {
                let v = self.bind(Param::Text(value.to_lowercase()));
                format!("starts_with(lower({t}), {v})")
            }
            FieldTest::OneOf { values } => {
                let v = self.bind(Param::TextArray(values.iter().map(|v| v.to_lowercase()).collect()));
                format!("(lower({t}) = ANY({v}))")
            }
            FieldTest::Number { cmp, value } => {
                let v = self.bind(Param::Float(*value));
                let op = match cmp {
                    domain::segments::Cmp::Eq => "=",
                    domain::segments::Cmp::Ne => "<>",
                    domain::segments::Cmp::Lt => "<",
                    domain::segments::Cmp::Le => "<=",
                    domain::segments::Cmp::Gt => ">",
                    domain::segments::Cmp::Ge => ">=",
                };
                format!("({t} {op} {v})")
            }
            FieldTest::DateBefore { date } => {
                let v = self.bind(Param::Date(*date));
                format!("({t} < {v})")
            }
            FieldTest::DateAfter { date } => {
                let v = self.bind(Param::Date(*date));
                format!("({t} > {v})")
            }
            FieldTest::DateWithinLastDays { days } => {
                let from = self.bind(Param::Date(today - chrono::Days::new(u64::from(*days))));
                let to = self.bind(Param::Date(today));
                format!("({t} >= {from} AND {t} <= {to})")
            }
            FieldTest::AnniversaryWithinNextDays { days } => {
                let d = self.bind(Param::Date(today));
                let n = self.bind(Param::Int(i32::try_from(*days).unwrap_or(i32::MAX)));
                format!("(hermetic_days_to_anniversary({t}, {d}) <= {n})")
            }
            FieldTest::BooleanIs { value } => {
                let v = self.bind(Param::Bool(*value));
                format!("({t} = {v})")
            }
            // Never reaches evaluation (validation refuses it); matches nothing, like the evaluator.
            FieldTest::Hidden { .. } => "FALSE".into(),
        }
    }

    fn since(&mut self, within_days: Option<u32>, column: &str) -> String {
        match within_days {
            Some(d) => {
                let s = self.bind(Param::Time(self.now - chrono::Duration::days(i64::from(d))));
                format!(" AND {column} >= {s}")
            }
            None => String::new(),
        }
    }

    fn event_exists(&mut self, event_type: &str, within_days: Option<u32>) -> String {
        let t = self.bind(Param::Text(event_type.to_string()));
        let since = self.since(within_days, "pe.occurred_at");
        format!(
            "EXISTS (SELECT 1 FROM patient_event pe WHERE pe.contact_id = c.id AND pe.organisation_id = $1 AND pe.event_type = {t}{since})"
        )
    }

    /// Exact SQL for a condition without PHI.
    fn leaf(&mut self, c: &Condition) -> String {
        let sql = match c {
            Condition::Field { field, test } => {
                let Some(f) = self.fields.iter().find(|f| &f.key == field).cloned() else {
                    return "FALSE".into();
                };
                let t = self.field_expr(&f);
                let is_text = matches!(f.field_type, FieldType::Text | FieldType::OneOf);
                self.test_sql(&t, is_text, test)
            }
            Condition::InList { list } => {
                let l = self.bind(Param::Uuid(*list));
                // Subscribed as every view of a list says it (`contacts::lists::EFFECTIVE_STATUS`):
                // a member whose consent for the list's purpose is withdrawn is not in it.
                format!(
                    "EXISTS (SELECT 1 FROM list_member m JOIN contact_list l ON l.id = m.list_id {join}
                     WHERE m.contact_id = c.id AND m.organisation_id = $1 AND m.list_id = {l} AND {status} = 'subscribed')",
                    join = crate::contacts::lists::CONSENT_JOIN,
                    status = crate::contacts::lists::EFFECTIVE_STATUS,
                )
            }
            Condition::Consent { purpose } => {
                let p = self.bind(Param::Text(purpose.as_str().into()));
                format!(
                    "EXISTS (SELECT 1 FROM contact_consent k WHERE k.contact_id = c.id AND k.organisation_id = $1 AND k.purpose = {p} AND k.granted)"
                )
            }
            // A received message is its delivery row, accepted by the mail server ('sent' at
            // `accepted_at`): sending writes no separate event for it.
            Condition::Engagement { activity: Activity::Received, campaign, within_days } => {
                let camp = match campaign {
                    Some(id) => format!(" AND d.campaign_id = {}", self.bind(Param::Uuid(*id))),
                    None => String::new(),
                };
                let since = self.since(*within_days, "d.accepted_at");
                format!(
                    "EXISTS (SELECT 1 FROM delivery d WHERE d.contact_id = c.id AND d.organisation_id = $1 AND d.state = 'sent'{camp}{since})"
                )
            }
            Condition::Engagement { activity, campaign, within_days } => {
                let a = self.bind(Param::Text(activity.as_str().into()));
                let camp = match campaign {
                    Some(id) => format!(" AND e.campaign_id = {}", self.bind(Param::Uuid(*id))),
                    None => String::new(),
                };
                let since = self.since(*within_days, "e.occurred_at");
                format!(
                    "EXISTS (SELECT 1 FROM engagement_event e WHERE e.contact_id = c.id AND e.organisation_id = $1 AND e.activity = {a} AND NOT e.machine{camp}{since})"
                )
            }
            Condition::NeverOpened => "NOT EXISTS (SELECT 1 FROM engagement_event e WHERE e.contact_id = c.id AND e.organisation_id = $1 AND e.activity = 'opened' AND NOT e.machine)".into(),
            Condition::Event { event_type, within_days, .. } => self.event_exists(event_type, *within_days),
        };
        format!("COALESCE({sql}, false)")
    }

    /// (over-approximating SQL, exact?)
    fn node(&mut self, n: &Node) -> (String, bool) {
        match n {
            Node::Condition { condition } => {
                if needs_phi(condition, self.fields) {
                    self.leaf_sql.push(None);
                    match condition {
                        Condition::Field { field, .. } => {
                            let col = sealed_column(field);
                            if !self.sealed.contains(&col) {
                                self.sealed.push(col);
                            }
                            ("TRUE".into(), false)
                        }
                        Condition::Event { event_type, within_days, .. } => {
                            if !self.event_types.contains(event_type) {
                                self.event_types.push(event_type.clone());
                            }
                            (self.event_exists(event_type, *within_days), false)
                        }
                        _ => ("TRUE".into(), false),
                    }
                } else {
                    let sql = self.leaf(condition);
                    self.leaf_sql.push(Some(sql.clone()));
                    (sql, true)
                }
            }
            Node::Not { child } => {
                let (sql, exact) = self.node(child);
                if exact { (format!("(NOT {sql})"), true) } else { ("TRUE".into(), false) }
            }
            Node::And { children } | Node::Or { children } => {
                let and = matches!(n, Node::And { .. });
                if children.is_empty() {
                    return (if and { "TRUE" } else { "FALSE" }.into(), true);
                }
                let mut parts = Vec::with_capacity(children.len());
                let mut exact = true;
                for c in children {
                    let (sql, e) = self.node(c);
                    exact &= e;
                    parts.push(sql);
                }
                (format!("({})", parts.join(if and { " AND " } else { " OR " })), exact)
            }
        }
    }
}

/// Compile a validated tree. `now` fixes "today" and the "within N days" windows.
pub fn compile(root: &Node, fields: &[SegmentField], organisation: Uuid, now: DateTime<Utc>) -> Plan {
    let mut c = Compiler {
        fields,
        now,
        params: vec![Param::Uuid(organisation)],
        leaf_sql: vec![],
        sealed: vec![],
        event_types: vec![],
    };
    let (prefilter, exact) = c.node(root);
    Plan {
        prefilter,
        exact,
        leaf_sql: c.leaf_sql,
        params: c.params,
        sealed_columns: c.sealed,
        event_types: c.event_types,
    }
}
