//! Email templates. `sandbox` is the one handlebars registry: strict, escaping, only pure
//! helpers, every template checked against the organisation's fields before it is stored, and
//! rendering capped in time and size. `store` keeps templates as immutable versions, previews and
//! test-sends them, and caches compiled versions. Which kinds of message may use the
//! message-bound namespaces (`message.*`, `event.*`) is `namespaces_allowed`.

pub mod engine;
pub mod merge;
pub mod preview;
pub mod sandbox;
pub mod store;
pub mod test_send;

pub use engine::Engine;
pub use sandbox::{
    Allowed, Checked, FieldInfo, MergeFields, Rendered, Sandbox, TemplateParts, keys_allowed, namespaces_allowed,
};
