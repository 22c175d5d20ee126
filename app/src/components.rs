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
    // Server rendering: a form's default, never a decision (those take the service's `Clock`).
    #[cfg(not(feature = "hydrate"))]
    #[allow(clippy::disallowed_methods)]
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

/// The one not-found page: what happened and a way back. During the server render it sets HTTP
/// 404, so unknown paths and unknown ids answer 404 in every area.
#[component]
pub fn NotFoundPanel(
    /// Where "back" goes (the area's list), and what the link says.
    #[prop(into, optional)]
    back_href: Option<String>,
    #[prop(into, optional)] back_label: Option<String>,
) -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::ssr::set_status(404);
    view! {
        <section class="panel not-found" data-test="not-found">
            <h1>"Page not found"</h1>
            <p>"There is nothing here. The address may be mistyped, or what it pointed to was deleted or belongs to another organisation."</p>
            <p class="actions">
                {back_href.map(|href| view! {
                    <a class="button primary" href=href data-test="not-found-back">{back_label.unwrap_or_else(|| "Back".into())}</a>
                })}
                <a class="button" href="/">"Go to the home page"</a>
            </p>
        </section>
    }
}

/// An area's failed load: the not-found page for unknown ids, else the error message.
pub fn load_error(e: AppError, back_href: &'static str, back_label: &'static str) -> AnyView {
    if e.is("not_found") {
        view! { <NotFoundPanel back_href=back_href back_label=back_label/> }.into_any()
    } else {
        redirect_if_signed_out(&e);
        view! { <section class="panel"><p class="alert error" role="alert">{e.message}</p></section> }.into_any()
    }
}

/// For pages that load their record in the browser (after hydration): checks during the server
/// render whether the record exists, so an unknown id answers HTTP 404 (the server function's
/// not-found error sets it). Renders nothing, and carries only found / not found to the browser.
/// `id` is the route's `:id` parameter; one that is not a UUID is not found either.
#[component]
pub fn NotFoundStatus<F, Fut>(id: Option<String>, exists: F) -> impl IntoView
where
    F: Fn(uuid::Uuid) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), AppError>> + Send + 'static,
{
    let id = id.map(|s| uuid::Uuid::parse_str(&s).ok());
    let check = Resource::new(
        move || id,
        move |id| {
            let fut = id.flatten().map(&exists);
            async move {
                match (id, fut) {
                    (Some(_), Some(f)) => f.await.map_err(|e| e.code),
                    (Some(_), None) => Err("not_found".to_string()),
                    (None, _) => Ok(()),
                }
            }
        },
    );
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                #[cfg(feature = "ssr")]
                if let Err(code) = check.await && code == "not_found" {
                    crate::ssr::set_status(404);
                }
                #[cfg(not(feature = "ssr"))]
                let _ = check.await;
            })}
        </Suspense>
    }
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A refused value shown next to its field, in the field's own label ("Time zone is not a known
/// time zone."). `field` is the key the service names (`ServiceError::invalid(field, reason)`).
/// Put it right after the field's control; pair the form's general `ErrorMessage` with
/// [`unplaced`] so the same message does not show twice.
#[component]
pub fn FieldError(
    #[prop(into)] error: Signal<Option<AppError>>,
    #[prop(into)] field: String,
    #[prop(into)] label: String,
) -> impl IntoView {
    let test = format!("field-error-{field}");
    move || {
        error.with(|e| e.as_ref().and_then(|e| e.about_field(&field, &label))).map(|m| {
            view! { <p class="field-error" role="alert" data-test=test.clone()>{m}</p> }
        })
    }
}

/// The form's error unless it is about one of `fields` (those show next to their field).
pub fn unplaced(error: Signal<Option<AppError>>, fields: &'static [&'static str]) -> Signal<Option<AppError>> {
    Signal::derive(move || error.get().filter(|e| !e.is_about_any(fields)))
}
