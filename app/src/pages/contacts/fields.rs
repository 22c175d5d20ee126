//! Custom contact fields (administrators). Whether a field holds PHI is chosen once, at creation.

use super::ContactsNav;
use crate::api_contacts::{create_field, delete_field, list_fields};
use crate::components::{ErrorMessage, FieldError, Guard, unplaced, use_hydrated};
use crate::error::AppError;
use domain::Permission;
use domain::contacts::FieldType;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn FieldsPage() -> impl IntoView {
    view! {
        <Title text="Contact fields · Hermetic"/>
        <Guard permission=Permission::SettingsManage>
            <ContactsNav/>
            <Fields/>
        </Guard>
    }
}

#[component]
fn Fields() -> impl IntoView {
    let hydrated = use_hydrated();
    let version = RwSignal::new(0u32);
    let fields = Resource::new(move || version.get(), |_| list_fields());
    let key = RwSignal::new(String::new());
    let label = RwSignal::new(String::new());
    let kind = RwSignal::new("text".to_string());
    let options = RwSignal::new(String::new());
    let phi = RwSignal::new(true);
    let error = RwSignal::new(None::<AppError>);
    let create = Action::new(|(k, l, t, o, p): &(String, String, FieldType, Vec<String>, bool)| {
        create_field(k.clone(), l.clone(), *t, o.clone(), *p)
    });
    let remove = Action::new(|id: &uuid::Uuid| delete_field(*id));
    Effect::new(move || {
        if let Some(r) = create.value().get() {
            if r.is_ok() {
                key.set(String::new());
                label.set(String::new());
                options.set(String::new());
            }
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    });
    Effect::new(move || {
        if let Some(r) = remove.value().get() {
            error.set(r.err());
            version.update(|v| *v += 1);
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(t) = FieldType::parse(&kind.get_untracked()) else { return };
        let opts: Vec<String> =
            options.get_untracked().lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        create.dispatch((key.get_untracked(), label.get_untracked(), t, opts, phi.get_untracked()));
    };
    view! {
        <section class="panel">
            <h1>"Contact fields"</h1>
            <p class="hint">"Fields marked PHI are encrypted and only decrypted for an audited read; other fields are stored plainly so segments can filter on them quickly. Choose PHI for anything about a person's health, care or identity."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match fields.await {
                        Ok(fs) => view! {
                            <table data-test="fields-table">
                                <thead><tr><th scope="col">"Label"</th><th scope="col">"Merge field"</th><th scope="col">"Type"</th><th scope="col">"PHI"</th><th scope="col"></th></tr></thead>
                                <tbody>
                                    {fs.into_iter().map(|f| {
                                        let id = f.id;
                                        view! {
                                            <tr>
                                                <td>{f.label.clone()}</td>
                                                <td><code>{format!("{{{{{}}}}}", f.key)}</code></td>
                                                <td>{f.field_type.label()}{(!f.options.is_empty()).then(|| format!(" ({})", f.options.join(", ")))}</td>
                                                <td>{if f.is_phi { "Yes" } else { "No" }}</td>
                                                <td><button class="danger" on:click=move |_| { remove.dispatch(id); }>"Delete"</button></td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="panel">
            <h2>"New field"</h2>
            <form class="form-grid" on:submit=submit>
                <label for="field-label">"Label"</label>
                <input id="field-label" required maxlength="100" bind:value=label/>
                <FieldError error=error field="label" label="Label"/>
                <label for="field-key">"Merge field name"</label>
                <input id="field-key" required maxlength="40" pattern="[a-z][a-z0-9_]*" placeholder="insurance_plan" bind:value=key/>
                <FieldError error=error field="key" label="Merge field name"/>
                <label for="field-type">"Type"</label>
                <select id="field-type" on:change=move |ev| kind.set(event_target_value(&ev))>
                    {FieldType::ALL.iter().map(|t| view! { <option value=t.as_str()>{t.label()}</option> }).collect_view()}
                </select>
                <label for="field-options">"Options (one per line)"</label>
                <textarea id="field-options" rows="3" bind:value=options disabled=move || kind.get() != "one_of"></textarea>
                <FieldError error=error field="options" label="Options"/>
                <label for="field-phi">"Holds PHI"</label>
                <span><input id="field-phi" type="checkbox" class="checkbox" bind:checked=phi/>" Encrypt this field"</span>
                <div></div>
                <button type="submit" class="primary" disabled=move || !hydrated.get() || create.pending().get()>"Add field"</button>
            </form>
            <ErrorMessage error=unplaced(error.into(), &["label", "key", "options"])/>
        </section>
    }
}
