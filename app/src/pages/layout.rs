//! The signed-in app shell: header, navigation, the idle-logout warning, and the page outlet.

use crate::api::{current_user, keep_alive, sign_out};
use crate::components::{hard_navigate, use_hydrated};
use crate::pages_table::NAV;
use domain::dto::Me;
use leptos::prelude::*;
use leptos_router::components::{A, Outlet};

#[component]
pub fn AppLayout() -> impl IntoView {
    let me = Resource::new(|| (), |_| current_user());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) => view! { <Shell me=me/> }.into_any(),
                    Ok(None) => {
                        hard_navigate("/login?reason=expired");
                        view! { <p class="loading">"Redirecting to sign-in…"</p> }.into_any()
                    }
                    Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Shell(me: Me) -> impl IntoView {
    provide_context(me.clone());
    let nav = NAV
        .iter()
        .filter(|(_, _, p)| me.can(*p))
        .map(|(href, label, _)| view! { <li><A href=*href exact=true>{*label}</A></li> })
        .collect_view();
    let signing_out = RwSignal::new(false);
    // Disabled until hydrated: before that a click would do nothing at all.
    let hydrated = use_hydrated();
    let do_sign_out = move |_| {
        signing_out.set(true);
        leptos::task::spawn_local(async move {
            let _ = sign_out().await;
            hard_navigate("/login?reason=signed_out");
        });
    };
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <div class="app">
            <header class="topbar">
                <a class="logo" href="/">"Hermetic"</a>
                <span class="org" data-test="org-name">{me.organisation_name.clone()}</span>
                <div class="user">
                    <span class="who" data-test="user-name">
                        {if me.display_name.is_empty() { me.email.clone() } else { me.display_name.clone() }}
                        <span class="role">{me.role.label()}</span>
                    </span>
                    <button class="link" on:click=do_sign_out disabled=move || signing_out.get() || !hydrated.get() data-test="sign-out">
                        "Sign out"
                    </button>
                </div>
            </header>
            <nav class="sidebar" aria-label="Main">
                <ul>{nav}</ul>
            </nav>
            <main id="main" class="content" tabindex="-1">
                <Outlet/>
            </main>
        </div>
        <IdleWarning idle_secs=me.idle_timeout_secs warning_secs=me.idle_warning_secs/>
    }
}

/// Seconds since some fixed point, from the browser's monotonic clock.
fn now_secs() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        window().performance().map(|p| p.now() / 1000.0).unwrap_or(0.0)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}

/// Warns before the server ends an idle session and signs the user out when it does. The server is
/// the authority: near the deadline the component asks `session_status` (which does not count as
/// activity) how much time is really left, since other tabs may have kept the session alive.
#[component]
fn IdleWarning(idle_secs: u64, warning_secs: u64) -> impl IntoView {
    let deadline = RwSignal::new(now_secs() + idle_secs as f64);
    let remaining = RwSignal::new(idle_secs as i64);
    let open = RwSignal::new(false);
    let checking = RwSignal::new(false);
    let stay_ref = NodeRef::<leptos::html::Button>::new();

    Effect::new(move || {
        deadline.set(now_secs() + idle_secs as f64);
        // A background call: asking how much time is left must not itself count as activity.
        crate::background::every(
            std::time::Duration::from_secs(1),
            move || {
                let left = (deadline.get_untracked() - now_secs()).ceil() as i64;
                remaining.set(left.max(0));
                if left <= 0 {
                    hard_navigate("/login?reason=idle");
                    return None;
                }
                (left <= warning_secs as i64 && !checking.get_untracked()).then(|| {
                    checking.set(true);
                    crate::api::GetSessionStatus {}
                })
            },
            move |r| {
                match r {
                    Ok(s) if s.authenticated => {
                        deadline.set(now_secs() + s.idle_remaining_secs as f64);
                        let show = s.idle_remaining_secs <= warning_secs;
                        if show && !open.get_untracked() {
                            open.set(true);
                            // Move keyboard focus into the dialog once it is displayed.
                            set_timeout(
                                move || {
                                    if let Some(b) = stay_ref.get_untracked() {
                                        let _ = b.focus();
                                    }
                                },
                                std::time::Duration::from_millis(30),
                            );
                        } else if !show {
                            open.set(false);
                        }
                    }
                    Ok(_) => hard_navigate("/login?reason=idle"),
                    Err(_) => {}
                }
                checking.set(false);
            },
        );
    });

    let stay = move |_| {
        leptos::task::spawn_local(async move {
            match keep_alive().await {
                Ok(s) => {
                    deadline.set(now_secs() + s.idle_remaining_secs as f64);
                    open.set(false);
                }
                Err(_) => hard_navigate("/login?reason=idle"),
            }
        });
    };
    let leave = move |_| {
        leptos::task::spawn_local(async move {
            let _ = sign_out().await;
            hard_navigate("/login?reason=signed_out");
        });
    };
    view! {
        <div class="modal-backdrop" class:hidden=move || !open.get()>
            <div class="modal" role="alertdialog" aria-modal="true" aria-labelledby="idle-title" aria-describedby="idle-text"
                data-test="idle-warning">
                <h2 id="idle-title">"Are you still there?"</h2>
                <p id="idle-text">
                    "For the security of patient data you will be signed out in "
                    <strong>{move || remaining.get()}</strong>" seconds."
                </p>
                <div class="actions">
                    <button class="primary" node_ref=stay_ref on:click=stay>"Stay signed in"</button>
                    <button on:click=leave>"Sign out now"</button>
                </div>
            </div>
        </div>
    }
}
