//! What the template editor exchanges with the server. Template content is authored copy with
//! merge tags, not contact data; a preview personalised for a real contact carries PHI and says so
//! with `Phi`.

use crate::Phi;
use crate::templates::Design;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How the body is authored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EditorMode {
    /// The block editor; the HTML is generated from the design on the server.
    #[default]
    Blocks,
    /// Raw HTML written by an expert.
    Html,
}

impl EditorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EditorMode::Blocks => "blocks",
            EditorMode::Html => "html",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blocks" => Some(EditorMode::Blocks),
            "html" => Some(EditorMode::Html),
            _ => None,
        }
    }
}

/// The editable content of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TemplateContent {
    pub mode: EditorMode,
    pub subject: String,
    pub preheader: String,
    /// The block document (used in blocks mode).
    pub design: Design,
    /// The raw HTML (html mode). In blocks mode the server fills it from the design.
    pub html: String,
    /// The plain-text part.
    pub text: String,
    /// false: the text is regenerated from the HTML on every save.
    pub text_edited: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSummary {
    pub id: Uuid,
    pub name: String,
    pub latest_version: i32,
    pub subject: String,
    pub uses_phi: bool,
    pub has_draft: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: i32,
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub uses_phi: bool,
}

/// A merge field as the picker shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeFieldView {
    /// What to insert, e.g. `{{contact.first_name}}`.
    pub tag: String,
    pub label: String,
    pub is_phi: bool,
    /// Date fields: the picker offers the `date` helper.
    pub is_date: bool,
}

/// An unsaved working copy kept because it did not pass the checks yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftView {
    pub content: TemplateContent,
    pub error: String,
    pub saved_at: DateTime<Utc>,
}

/// Everything the editor needs to open a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateEditor {
    pub id: Uuid,
    pub name: String,
    /// The version shown (the latest unless one was asked for).
    pub version: i32,
    pub version_id: Uuid,
    pub latest_version: i32,
    pub content: TemplateContent,
    pub uses_phi: bool,
    pub draft: Option<DraftView>,
    pub versions: Vec<VersionMeta>,
    pub fields: Vec<MergeFieldView>,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SaveOutcome {
    /// A new version was stored. `html` and `text` are what the server stored (generated parts
    /// included), so the editor shows exactly what will be sent.
    Saved { version: i32, version_id: Uuid, created_at: DateTime<Utc>, uses_phi: bool, html: String, text: String },
    /// Nothing changed since the latest version.
    Unchanged { version: i32 },
    /// The content does not pass the checks: it was kept as a draft, and this is why.
    DraftKept { error: String },
}

/// Which data a preview is personalised with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreviewSample {
    /// Made-up values for every field: no PHI involved.
    Synthetic,
    /// A real contact of the organisation (an audited PHI read).
    Contact(Uuid),
}

/// A rendered preview. With a real sample contact it holds PHI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewView {
    pub subject: Phi<String>,
    pub preheader: Phi<String>,
    pub html: Phi<String>,
    pub text: Phi<String>,
    pub uses_phi: bool,
}

/// A starter template offered when creating a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarterView {
    pub key: String,
    pub name: String,
    pub subject: String,
}
