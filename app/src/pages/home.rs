//! The home page and the pages of areas that later releases fill.

use crate::components::{Guard, use_me};
use domain::Permission;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn HomePage() -> impl IntoView {
    let me = use_me();
    let name = me
        .as_ref()
        .map(|m| if m.display_name.is_empty() { m.email.clone() } else { m.display_name.clone() })
        .unwrap_or_default();
    let org = me.as_ref().map(|m| m.organisation_name.clone()).unwrap_or_default();
    let role = me.as_ref().map(|m| m.role.label()).unwrap_or_default();
    view! {
        <Title text="Home · Hermetic"/>
        <section class="panel">
            <h1>"Welcome, " {name}</h1>
            <p>"You are signed in to " <strong>{org}</strong> " as " {role} "."</p>
            <p class="hint">"Every contact record in Hermetic is protected health information: it is encrypted at rest, every read is audited, and mail is only sent over enforced TLS."</p>
        </section>
    }
}

/// One of the product areas (contacts, segments, …): what it is for, until it holds data.
#[component]
pub fn AreaPage(title: &'static str, permission: Permission, about: &'static str) -> impl IntoView {
    view! {
        <Title text=format!("{title} · Hermetic")/>
        <Guard permission=permission>
            <section class="panel">
                <h1>{title}</h1>
                <p>{about}</p>
                <p class="empty">"Nothing here yet."</p>
            </section>
        </Guard>
    }
}
