//! `Phi<T>`: the only home of plaintext protected health information.
//!
//! `Debug` and `Display` print `[redacted]`, so a PHI value that slips into a log line, an error
//! message or a panic shows nothing. Reading the value is an explicit `expose()` call that reviewers
//! can grep for. Serialization is transparent because DTOs deliberately carry PHI to an authorised
//! screen; that path is audited in the service layer.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    pub fn new(value: T) -> Self {
        Phi(value)
    }
    /// Borrow the plaintext. Every call site is a place where PHI is handled on purpose.
    pub fn expose(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Phi<U> {
        Phi(f(self.0))
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let p = Phi::new("Jane Marker-Doe".to_string());
        assert_eq!(format!("{p:?}"), "[redacted]");
        assert_eq!(format!("{p}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&p)), "Some([redacted])");
        assert_eq!(p.expose(), "Jane Marker-Doe");
    }
}
