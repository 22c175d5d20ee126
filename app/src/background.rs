//! Calls the app makes on a timer, not because a person did something: progress polls and the
//! idle-warning check.
//!
//! Only a person's actions may count as activity for the idle logoff: a progress page left open
//! would otherwise keep its session alive until the absolute limit. So a timer reaches the server
//! only through [`every`], which takes only server functions marked [`Poll`] here, and [`POLLS`]
//! lists their paths: the server's route table marks exactly those as not touching the session.
//! Tests check that no other part of the app starts an interval, and that every poll is marked.

use crate::error::AppError;
use leptos::server_fn::ServerFn;

/// A server function the app calls on a timer. It must not count as activity.
pub trait Poll: ServerFn<Error = AppError> + 'static {}

macro_rules! polls {
    ($($t:path),* $(,)?) => {
        $(impl Poll for $t {})*
        /// The paths of every [`Poll`] server function.
        pub const POLLS: &[&str] = &[$(<$t as ServerFn>::PATH),*];
    };
}

polls!(crate::api::GetSessionStatus, crate::api_campaigns::CampaignProgress, crate::api_contacts::ImportStatus);

/// Call a poll now and then every `period` while the calling component lives. `next` gives this
/// tick's call (`None` skips the tick); `done` receives the answer.
pub fn every<T: Poll>(
    period: std::time::Duration,
    next: impl Fn() -> Option<T> + 'static,
    done: impl Fn(Result<T::Output, AppError>) + Clone + 'static,
) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::prelude::{on_cleanup, set_interval_with_handle};
        let tick = move || {
            if let Some(call) = next() {
                let done = done.clone();
                leptos::task::spawn_local(async move { done(call.run_on_client().await) });
            }
        };
        tick();
        if let Ok(handle) = set_interval_with_handle(tick, period) {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (period, next, done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }

    /// A timer elsewhere could call any server function and keep an idle session alive.
    #[test]
    fn only_this_module_starts_intervals() {
        let mut files = Vec::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        assert!(files.len() > 10);
        for f in files.iter().filter(|f| !f.ends_with("background.rs")) {
            let text = std::fs::read_to_string(f).unwrap();
            for banned in ["set_interval", "setInterval", "Interval::new", "IntervalStream", "run_on_client"] {
                assert!(
                    !text.contains(banned),
                    "{} uses {banned}: call the server on a timer only through background::every",
                    f.display()
                );
            }
        }
    }

    #[test]
    fn polls_are_api_paths() {
        assert!(POLLS.contains(&"/api/session_status"));
        assert!(POLLS.contains(&"/api/campaign_progress"));
        assert!(POLLS.contains(&"/api/import_status"));
    }
}
