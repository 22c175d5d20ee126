//! Contacts pages: table, detail, create, import, lists, suppression, custom fields.

pub mod detail;
pub mod fields;
pub mod import;
pub mod lists;
pub mod table;

use leptos::prelude::*;
use leptos_router::components::A;

/// The tabs across the contacts area.
#[component]
pub fn ContactsNav() -> impl IntoView {
    let me = crate::components::use_me();
    let admin = me.as_ref().is_some_and(|m| m.can(domain::Permission::SettingsManage));
    let writer = me.as_ref().is_some_and(|m| m.can(domain::Permission::ContactsWrite));
    view! {
        <nav class="subnav" aria-label="Contacts">
            <A href="/contacts" exact=true>"All contacts"</A>
            {writer.then(|| view! { <A href="/contacts/import">"Import"</A> })}
            <A href="/contacts/lists">"Lists"</A>
            <A href="/contacts/suppression">"Suppression"</A>
            {admin.then(|| view! { <A href="/contacts/fields">"Fields"</A> })}
        </nav>
    }
}
