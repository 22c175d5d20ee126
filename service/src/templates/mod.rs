//! Email templates. `sandbox` is the one handlebars registry: strict, escaping, only pure
//! helpers, every template checked against the organisation's fields before it is stored, and
//! rendering capped in time and size.

pub mod sandbox;

pub use sandbox::{Checked, FieldInfo, MergeFields, Rendered, Sandbox, TemplateParts};
