//! Sign-in, MFA, enrolment and invitation pages (no app chrome).

use crate::api::{AcceptInvite, ConfirmEnrolment, SignIn, VerifyMfa, begin_enrolment, lookup_invite};
use crate::components::{AuthCard, ErrorMessage, hard_navigate, use_hydrated};
use crate::pages_table::safe_next;
use domain::dto::SignInStep;
use domain::secret::Secret;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let hydrated = use_hydrated();
    let action = ServerAction::<SignIn>::new();
    let value = action.value();
    Effect::new(move || {
        if let Some(Ok(step)) = value.get() {
            let next = safe_next(query.read_untracked().get("next"));
            let target = match step {
                SignInStep::Mfa => format!("/login/mfa?next={}", encode_component(&next)),
                SignInStep::EnrolMfa => "/login/enrol".to_string(),
                SignInStep::Done => next,
            };
            hard_navigate(&target);
        }
    });
    let notice = move || match query.read().get("reason").as_deref() {
        Some("idle") => Some("You were signed out after a period of inactivity."),
        Some("expired") => Some("Your session has ended. Please sign in again."),
        Some("signed_out") => Some("You have signed out."),
        _ => None,
    };
    let error = Signal::derive(move || value.get().and_then(Result::err));
    view! {
        <Title text="Sign in · Hermetic"/>
        <AuthCard title="Sign in">
            {move || notice().map(|n| view! { <p class="alert info" role="status" data-test="notice">{n}</p> })}
            <ActionForm action=action attr:class="stack" attr:novalidate=true>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required autofocus/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <button type="submit" class="primary" disabled=move || !hydrated.get() || action.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
            <ErrorMessage error=error/>
        </AuthCard>
    }
}

#[component]
pub fn MfaPage() -> impl IntoView {
    let query = use_query_map();
    let hydrated = use_hydrated();
    let action = ServerAction::<VerifyMfa>::new();
    let value = action.value();
    Effect::new(move || {
        if let Some(Ok(target)) = value.get() {
            hard_navigate(&safe_next(Some(target)));
        }
    });
    let error = Signal::derive(move || value.get().and_then(Result::err));
    view! {
        <Title text="Two-step verification · Hermetic"/>
        <AuthCard title="Two-step verification">
            <p>"Enter the 6-digit code from your authenticator app."</p>
            <ActionForm action=action attr:class="stack">
                <label for="code">"Authentication code"</label>
                <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                    maxlength="24" required autofocus/>
                <input type="hidden" name="next" value=move || query.read().get("next").unwrap_or_default()/>
                <p class="hint">"Lost your device? Enter one of your recovery codes instead."</p>
                <button type="submit" class="primary" disabled=move || !hydrated.get() || action.pending().get()>
                    "Verify"
                </button>
            </ActionForm>
            <ErrorMessage error=error/>
            <p class="small"><a href="/login">"Start again"</a></p>
        </AuthCard>
    }
}

#[component]
pub fn EnrolPage() -> impl IntoView {
    let hydrated = use_hydrated();
    let enrolment = Resource::new(|| (), |_| begin_enrolment());
    let action = ServerAction::<ConfirmEnrolment>::new();
    let value = action.value();
    let error = Signal::derive(move || value.get().and_then(Result::err));
    view! {
        <Title text="Set up two-step verification · Hermetic"/>
        <AuthCard title="Set up two-step verification">
            {move || match value.get() {
                Some(Ok(codes)) => view! {
                    <div class="stack" data-test="recovery-codes">
                        <p class="alert success" role="status">"Two-step verification is on."</p>
                        <p>"Save these recovery codes somewhere safe. Each works once if you lose your device. They are shown only now."</p>
                        <ul class="codes">
                            {codes.codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
                        </ul>
                        <button class="primary" on:click=move |_| hard_navigate("/")>"I have saved my codes — continue"</button>
                    </div>
                }.into_any(),
                _ => view! {
                    <div class="stack">
                        <p>"Every Hermetic account uses an authenticator app (such as Google Authenticator, Microsoft Authenticator or 1Password). Scan this code with it:"</p>
                        <Suspense fallback=|| view! { <p>"Preparing…"</p> }>
                            {move || Suspend::new(async move {
                                match enrolment.await {
                                    Ok(e) => view! {
                                        <div class="qr" inner_html=e.qr_svg role="img" aria-label="QR code for your authenticator app"></div>
                                        <p class="hint">"Can't scan? Enter this key manually:"</p>
                                        <p><code class="secret" data-test="totp-secret">{e.secret_base32}</code></p>
                                    }.into_any(),
                                    Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                                }
                            })}
                        </Suspense>
                        <ActionForm action=action attr:class="stack">
                            <label for="code">"Code shown in the app"</label>
                            <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                                maxlength="12" required/>
                            <button type="submit" class="primary" disabled=move || !hydrated.get() || action.pending().get()>
                                "Turn on two-step verification"
                            </button>
                        </ActionForm>
                        <ErrorMessage error=error/>
                    </div>
                }.into_any(),
            }}
        </AuthCard>
    }
}

/// The invitation token arrives in the URL fragment (never sent to servers); it is read here in the
/// browser and then removed from the address bar.
#[component]
pub fn InvitePage() -> impl IntoView {
    let hydrated = use_hydrated();
    let token = RwSignal::new(None::<String>);
    Effect::new(move || {
        #[cfg(feature = "hydrate")]
        {
            let loc = window().location();
            if let Ok(hash) = loc.hash() {
                let t = hash.trim_start_matches('#').to_string();
                if !t.is_empty() {
                    token.set(Some(t));
                    if let Ok(h) = window().history() {
                        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some("/invite"));
                    }
                }
            }
        }
    });
    let info = Resource::new(
        move || token.get(),
        |t| async move {
            match t {
                Some(t) => Some(lookup_invite(Secret::new(t)).await),
                None => None,
            }
        },
    );
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let mismatch = RwSignal::new(false);
    let accept = ServerAction::<AcceptInvite>::new();
    let value = accept.value();
    let error = Signal::derive(move || value.get().and_then(Result::err));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if password.get_untracked() != confirm.get_untracked() {
            mismatch.set(true);
            return;
        }
        mismatch.set(false);
        if let Some(t) = token.get_untracked() {
            accept.dispatch(AcceptInvite { token: Secret::new(t), password: Secret::new(password.get_untracked()) });
        }
    };
    view! {
        <Title text="Accept invitation · Hermetic"/>
        <AuthCard title="Join your team on Hermetic">
            <Transition fallback=|| view! { <p>"Checking your invitation…"</p> }>
                {move || Suspend::new(async move {
                    match info.await {
                        None => view! { <p>"Open the full invitation link you were given."</p> }.into_any(),
                        Some(Err(e)) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                        Some(Ok(i)) => view! {
                            <p>"You are invited to " <strong>{i.organisation_name}</strong> " as " <strong>{i.email}</strong> "."</p>
                        }.into_any(),
                    }
                })}
            </Transition>
            {move || if let Some(Ok(())) = value.get() {
                view! {
                    <p class="alert success" role="status">"Your password is set. Sign in to set up two-step verification."</p>
                    <p><a class="button primary" href="/login">"Sign in"</a></p>
                }.into_any()
            } else {
                view! {
                    <form class="stack" on:submit=submit>
                        <label for="new-password">"Choose a password"</label>
                        <input id="new-password" type="password" autocomplete="new-password" minlength="12" required
                            bind:value=password/>
                        <p class="hint">"At least 12 characters. A short sentence is easy to remember and hard to guess."</p>
                        <label for="confirm-password">"Repeat the password"</label>
                        <input id="confirm-password" type="password" autocomplete="new-password" required bind:value=confirm/>
                        <button type="submit" class="primary" disabled=move || !hydrated.get() || token.get().is_none() || accept.pending().get()>
                            "Set password"
                        </button>
                        {move || mismatch.get().then(|| view! { <p class="alert error" role="alert">"The two passwords differ."</p> })}
                        <ErrorMessage error=error/>
                    </form>
                }.into_any()
            }}
        </AuthCard>
    }
}
