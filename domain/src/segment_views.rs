//! What the segment pages and server functions exchange. Member rows carry PHI inside `Phi`;
//! counts carry their disclosure control ([`Figure`]); definitions shown to people who may not
//! read contacts have the literal values of PHI conditions masked.

use crate::Phi;
use crate::disclosure::Figure;
use crate::segments::{Condition, FieldTest, SegmentDefinition, SegmentField};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Everything the builder offers: fields (PHI marked), lists, campaigns and known event types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuilderOptions {
    pub fields: Vec<SegmentField>,
    pub lists: Vec<Choice>,
    pub campaigns: Vec<Choice>,
    pub event_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub id: Uuid,
    pub name: String,
    pub conditions: usize,
    pub uses_phi: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentView {
    pub id: Uuid,
    pub name: String,
    /// The whole definition for people who may read contacts; otherwise with the literal values
    /// of PHI conditions masked (`FieldTest::Hidden`).
    pub definition: SegmentDefinition,
    pub updated_at: DateTime<Utc>,
}

/// A count of contacts, as its reader may see it (`domain::disclosure`): exact for people who may
/// read contacts; otherwise small counts and small complements hidden and the rest rounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCount {
    pub matching: Figure,
    /// All of the organisation's contacts.
    pub total: Figure,
    pub uses_phi: bool,
    pub elapsed_ms: u64,
}

impl SegmentCount {
    /// One sentence: "52 of 60 contacts match", "Fewer than 11 of about 60 contacts match".
    pub fn sentence(&self) -> String {
        let matching = match self.matching {
            Figure::Withheld => "All but a few".to_string(),
            f => {
                let mut w = f.words();
                if let Some(first) = w.get(..1) {
                    w = format!("{}{}", first.to_uppercase(), w.get(1..).unwrap_or_default());
                }
                w
            }
        };
        format!("{matching} of {} contacts match", self.total.words())
    }
}

fn quoted(v: &str) -> String {
    format!("“{v}”")
}

fn describe_test(t: &FieldTest) -> String {
    match t {
        FieldTest::TextEquals { value } => format!("is {}", quoted(value)),
        FieldTest::TextContains { value } => format!("contains {}", quoted(value)),
        FieldTest::TextStartsWith { value } => format!("starts with {}", quoted(value)),
        FieldTest::OneOf { values } => {
            format!("is one of {}", values.iter().map(|v| quoted(v)).collect::<Vec<_>>().join(", "))
        }
        FieldTest::IsEmpty => "is empty".into(),
        FieldTest::IsNotEmpty => "is not empty".into(),
        FieldTest::Number { cmp, value } => format!("{} {value}", cmp.symbol()),
        FieldTest::DateBefore { date } => format!("is before {}", date.format("%Y-%m-%d")),
        FieldTest::DateAfter { date } => format!("is after {}", date.format("%Y-%m-%d")),
        FieldTest::DateWithinLastDays { days } => format!("is within the last {days} days"),
        FieldTest::AnniversaryWithinNextDays { days } => format!("has an anniversary within the next {days} days"),
        FieldTest::BooleanIs { value } => if *value { "is yes" } else { "is no" }.into(),
        FieldTest::Hidden { test } => format!("{test} [value hidden]"),
    }
}

/// A condition in words, for the read-only view (labels from the builder's options).
pub fn describe_condition(c: &Condition, options: &BuilderOptions) -> String {
    let name = |choices: &[Choice], id: Uuid, what: &str| {
        choices
            .iter()
            .find(|x| x.id == id)
            .map(|x| quoted(&x.name))
            .unwrap_or_else(|| format!("a {what} that no longer exists"))
    };
    match c {
        Condition::Field { field, test } => {
            let label =
                options.fields.iter().find(|f| &f.key == field).map(|f| f.label.clone()).unwrap_or(field.clone());
            format!("{label} {}", describe_test(test))
        }
        Condition::InList { list } => format!("is in the list {}", name(&options.lists, *list, "list")),
        Condition::Consent { purpose } => format!("consents to {}", purpose.label().to_lowercase()),
        Condition::Engagement { activity, campaign, within_days } => {
            let which = campaign.map(|c| name(&options.campaigns, c, "campaign")).unwrap_or("any campaign".into());
            let window = within_days.map(|d| format!(" within the last {d} days")).unwrap_or_default();
            format!("{} {which}{window}", activity.label())
        }
        Condition::NeverOpened => "has never opened any campaign".into(),
        Condition::Event { event_type, within_days, properties } => {
            let window = within_days.map(|d| format!(" within the last {d} days")).unwrap_or_default();
            let props = properties
                .iter()
                .map(|p| format!(" where {} {}", p.key, describe_test(&p.test)))
                .collect::<Vec<_>>()
                .join(" and");
            format!("had a {} event{window}{props}", quoted(event_type))
        }
    }
}

/// One matching contact in a preview (an audited PHI read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMember {
    pub id: Uuid,
    pub name: Phi<String>,
    pub email: Phi<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::{Cmp, PropertyTest, field_catalogue, mask_phi};

    #[test]
    fn counts_read_as_sentences() {
        let c = |matching, total| SegmentCount { matching, total, uses_phi: true, elapsed_ms: 0 };
        assert_eq!(c(Figure::Exact(52), Figure::Exact(60)).sentence(), "52 of 60 contacts match");
        assert_eq!(
            c(Figure::FewerThan(11), Figure::Rounded(60)).sentence(),
            "Fewer than 11 of about 60 contacts match"
        );
        assert_eq!(c(Figure::Rounded(50), Figure::Rounded(70)).sentence(), "About 50 of about 70 contacts match");
        assert_eq!(c(Figure::Withheld, Figure::Rounded(70)).sentence(), "All but a few of about 70 contacts match");
    }

    #[test]
    fn masked_conditions_read_without_their_values() {
        let options =
            BuilderOptions { fields: field_catalogue(&[]), lists: vec![], campaigns: vec![], event_types: vec![] };
        let def = SegmentDefinition {
            version: 1,
            root: crate::segments::Node::And {
                children: vec![
                    crate::segments::Node::Condition {
                        condition: Condition::Field {
                            field: "email".into(),
                            test: FieldTest::TextEquals { value: "jane@x.org".into() },
                        },
                    },
                    crate::segments::Node::Condition {
                        condition: Condition::Event {
                            event_type: "lab.ready".into(),
                            within_days: Some(30),
                            properties: vec![PropertyTest {
                                key: "score".into(),
                                test: FieldTest::Number { cmp: Cmp::Gt, value: 7.0 },
                            }],
                        },
                    },
                ],
            },
        };
        let masked = mask_phi(&def, &options.fields);
        let words: Vec<String> =
            crate::segments::conditions(&masked.root).into_iter().map(|c| describe_condition(c, &options)).collect();
        assert_eq!(words[0], "Email is [value hidden]");
        assert_eq!(words[1], "had a “lab.ready” event within the last 30 days where score > [value hidden]");
        let plain: Vec<String> =
            crate::segments::conditions(&def.root).into_iter().map(|c| describe_condition(c, &options)).collect();
        assert_eq!(plain[0], "Email is “jane@x.org”");
    }
}
