//! What the segment pages and server functions exchange. Member rows carry PHI inside `Phi`.

use crate::Phi;
use crate::segments::{SegmentDefinition, SegmentField};
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
    pub definition: SegmentDefinition,
    pub updated_at: DateTime<Utc>,
}

/// A live count. Counts that depend on PHI conditions and are small are withheld from people who
/// may not see member rows (a count of 1 can disclose one patient's data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCount {
    /// `None` when withheld.
    pub matching: Option<u64>,
    /// Withheld counts are below this.
    pub withheld_below: u64,
    pub total: u64,
    pub uses_phi: bool,
    pub elapsed_ms: u64,
}

/// One matching contact in a preview (an audited PHI read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMember {
    pub id: Uuid,
    pub name: Phi<String>,
    pub email: Phi<String>,
}
