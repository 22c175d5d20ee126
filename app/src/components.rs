//! Small shared pieces of UI.

use crate::error::AppError;
use domain::Permission;
use domain::dto::Me;
use leptos::prelude::*;

/// Full page load (not client-side routing): used after sign-in state changes so the page gets the
/// new session's CSRF token and nothing from the previous state survives.
pub fn hard_navigate(_to: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(_to);
    }
}

/// The current time: the browser's clock in the browser, the server's on the server. For defaults
/// shown in forms only; the server decides what is valid.
pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    #[cfg(feature = "hydrate")]
    {
        chrono::DateTime::from_timestamp_millis(js_sys::Date::now() as i64).unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        chrono::Utc::now()
    }
}

/// Tomorrow at 09:00 (UTC): the default when someone chooses to schedule a send.
pub fn tomorrow_morning() -> chrono::NaiveDateTime {
    let date = now_utc().date_naive().succ_opt().unwrap_or_default();
    date.and_time(chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default())
}

/// True once the WASM bundle has hydrated the page (forms are disabled until then, because a plain
/// HTML post would not carry the CSRF header and would be refused).
pub fn use_hydrated() -> ReadSignal<bool> {
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move || set_hydrated.set(true));
    hydrated
}

/// If the error means the session is gone, go to the sign-in page.
pub fn redirect_if_signed_out(e: &AppError) {
    if e.is_signed_out() {
        hard_navigate("/login?reason=expired");
    }
}

#[component]
pub fn ErrorMessage(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().map(|e| {
            redirect_if_signed_out(&e);
            view! { <p class="alert error" role="alert">{e.message}</p> }
        })
    }
}

#[component]
pub fn AuthCard(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <main class="auth-page" id="main">
            <div class="auth-card">
                <p class="brand">"Hermetic"</p>
                <h1>{title}</h1>
                {children()}
            </div>
        </main>
    }
}

/// The signed-in user, provided by the app layout.
pub fn use_me() -> Option<Me> {
    use_context::<Me>()
}

/// Renders its children only for users holding `permission`; everyone else gets a 403 page.
#[component]
pub fn Guard(permission: Permission, children: ChildrenFn) -> impl IntoView {
    let allowed = use_me().is_some_and(|me| me.can(permission));
    if !allowed {
        #[cfg(feature = "ssr")]
        crate::ssr::set_status(403);
    }
    move || {
        if allowed {
            children().into_any()
        } else {
            view! {
                <section class="panel">
                    <h1>"Not available"</h1>
                    <p>"Your role does not have access to this page. Ask an administrator if you need it."</p>
                </section>
            }
            .into_any()
        }
    }
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
