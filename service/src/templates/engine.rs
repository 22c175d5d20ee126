//! The process's template engine: the handlebars sandbox and the cache of compiled versions.
//! Plain state held by `Services`; loading and compiling versions is `store`'s.

use super::sandbox::{Checked, Sandbox};
use domain::ids::OrganisationId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Compiled versions kept in memory per process.
const CACHE_CAPACITY: usize = 512;

/// A stored version, compiled once and shared (versions never change, so entries never go stale).
pub struct CompiledVersion {
    pub id: Uuid,
    pub organisation: OrganisationId,
    pub template_id: Uuid,
    pub version: i32,
    pub checked: Checked,
}

/// The process's template engine: the sandbox and the compiled-version cache.
pub struct Engine {
    pub sandbox: Sandbox,
    cache: Mutex<HashMap<Uuid, Arc<CompiledVersion>>>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine { sandbox: Sandbox::new(), cache: Mutex::new(HashMap::new()) }
    }
}

impl Engine {
    pub(crate) fn cached(&self, id: Uuid) -> Option<Arc<CompiledVersion>> {
        self.cache.lock().ok().and_then(|m| m.get(&id).cloned())
    }
    pub(crate) fn remember(&self, v: CompiledVersion) -> Arc<CompiledVersion> {
        let v = Arc::new(v);
        if let Ok(mut m) = self.cache.lock() {
            if m.len() >= CACHE_CAPACITY {
                m.clear();
            }
            m.insert(v.id, v.clone());
        }
        v
    }
    /// How many compiled versions are cached (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.cache.lock().map(|m| m.len()).unwrap_or(0)
    }
}
