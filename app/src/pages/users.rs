//! Administration of the organisation's users: invite, change roles, disable/enable, reset MFA.

use crate::api::{
    InviteUser, change_role, disable_user, enable_user, list_users, resend_invite, reset_user_mfa, revoke_invite,
};
use crate::components::{ErrorMessage, FieldError, Guard, format_time, unplaced, use_hydrated, use_me};
use crate::error::AppError;
use domain::dto::{UserStatus, UserView};
use domain::{Permission, Role};
use leptos::prelude::*;
use leptos_meta::Title;
use uuid::Uuid;

#[derive(Clone, Copy)]
enum UserOp {
    Role(Role),
    Disable,
    Enable,
    ResetMfa,
    Resend,
    Revoke,
}

/// What the last row action did, for the status line above the table.
#[derive(Clone)]
enum Done {
    Resent(String, chrono::DateTime<chrono::Utc>),
    Revoked(String),
    Other,
}

#[component]
pub fn UsersPage() -> impl IntoView {
    view! {
        <Title text="Users · Hermetic"/>
        <Guard permission=Permission::UsersManage>
            <UsersAdmin/>
        </Guard>
    }
}

#[component]
fn UsersAdmin() -> impl IntoView {
    let hydrated = use_hydrated();
    let my_id = use_me().map(|m| m.user_id);
    let version = RwSignal::new(0u32);
    let users = Resource::new(move || version.get(), |_| list_users());
    let op_error = RwSignal::new(None::<AppError>);
    let done = RwSignal::new(None::<Done>);
    let op = Action::new(move |(id, op, email): &(Uuid, UserOp, String)| {
        let (id, op, email) = (*id, *op, email.clone());
        async move {
            match op {
                UserOp::Role(r) => change_role(id, r).await.map(|_| Done::Other),
                UserOp::Disable => disable_user(id).await.map(|_| Done::Other),
                UserOp::Enable => enable_user(id).await.map(|_| Done::Other),
                UserOp::ResetMfa => reset_user_mfa(id).await.map(|_| Done::Other),
                UserOp::Resend => resend_invite(id).await.map(|c| Done::Resent(c.email, c.expires_at)),
                UserOp::Revoke => revoke_invite(id).await.map(|_| Done::Revoked(email)),
            }
        }
    });
    Effect::new(move || {
        if let Some(r) = op.value().get() {
            match r {
                Ok(d) => {
                    op_error.set(None);
                    done.set(Some(d));
                }
                Err(e) => {
                    op_error.set(Some(e));
                    done.set(None);
                }
            }
            version.update(|v| *v += 1);
        }
    });
    let invite = ServerAction::<InviteUser>::new();
    let invite_value = invite.value();
    Effect::new(move || {
        if let Some(Ok(_)) = invite_value.get() {
            version.update(|v| *v += 1);
        }
    });
    let invite_error = Signal::derive(move || invite_value.get().and_then(Result::err));

    let row = move |u: UserView| {
        let id = u.id;
        let is_me = Some(u.id) == my_id;
        let email = u.email.clone();
        let status = match u.status {
            UserStatus::Active => "Active".to_string(),
            UserStatus::Invited => match u.invite_expires_at {
                Some(t) => format!("Invited · link valid until {}", format_time(t)),
                None => "Invited · link expired".to_string(),
            },
            UserStatus::Disabled => "Disabled".to_string(),
        };
        let on_role = {
            let email = email.clone();
            move |ev: leptos::ev::Event| {
                if let Ok(r) = event_target_value(&ev).parse::<Role>() {
                    op.dispatch((id, UserOp::Role(r), email.clone()));
                }
            }
        };
        let act = move |o: UserOp| {
            let email = email.clone();
            move |_| {
                op.dispatch((id, o, email.clone()));
            }
        };
        let role_options = Role::ALL
            .iter()
            .map(|r| view! { <option value=r.as_str() selected=*r == u.role>{r.label()}</option> })
            .collect_view();
        view! {
            <tr data-test="user-row" data-email=u.email.clone()>
                <td>{u.display_name.clone()}<br/><span class="muted">{u.email.clone()}</span></td>
                <td>
                    <label class="visually-hidden" for=format!("role-{id}")>"Role of " {u.email.clone()}</label>
                    <select id=format!("role-{id}") on:change=on_role disabled=move || is_me || !hydrated.get()>
                        {role_options}
                    </select>
                </td>
                <td data-test="user-status">{status}</td>
                <td>{if u.mfa_enrolled { "On" } else { "Not set up" }}</td>
                <td>{u.last_sign_in_at.map(format_time).unwrap_or_else(|| "Never".into())}</td>
                <td class="actions">
                    {(!is_me).then(|| match u.status {
                        UserStatus::Disabled => view! {
                            <button on:click=act(UserOp::Enable)>"Enable"</button>
                        }.into_any(),
                        // A pending invitation: mail a new link (the old one stops working) or withdraw it.
                        UserStatus::Invited => view! {
                            <button on:click=act(UserOp::Resend) disabled=move || !hydrated.get() || op.pending().get()>"Send again"</button>
                            <button class="danger" on:click=act(UserOp::Revoke) disabled=move || !hydrated.get() || op.pending().get()>"Revoke invitation"</button>
                        }.into_any(),
                        UserStatus::Active => view! {
                            <button class="danger" on:click=act(UserOp::Disable)>"Disable"</button>
                        }.into_any(),
                    })}
                    {(!is_me && u.mfa_enrolled).then(|| view! {
                        <button on:click=act(UserOp::ResetMfa)>"Reset MFA"</button>
                    })}
                </td>
            </tr>
        }
    };

    view! {
        <section class="panel">
            <h1>"Users"</h1>
            <ErrorMessage error=op_error/>
            {move || match done.get() {
                Some(Done::Resent(email, until)) => Some(view! {
                    <p class="alert success" role="status" data-test="invite-resent">
                        "A new invitation was sent to " <strong>{email}</strong> ". Its link works once, until "
                        {format_time(until)} "; earlier links no longer work."
                    </p>
                }.into_any()),
                Some(Done::Revoked(email)) => Some(view! {
                    <p class="alert success" role="status" data-test="invite-revoked">
                        "The invitation to " <strong>{email}</strong> " was revoked: its link no longer works."
                    </p>
                }.into_any()),
                _ => None,
            }}
            <Transition fallback=|| view! { <p>"Loading users…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! {
                            <div class="table-wrap">
                                <table>
                                    <caption class="visually-hidden">"Users of this organisation"</caption>
                                    <thead><tr>
                                        <th scope="col">"Name"</th><th scope="col">"Role"</th><th scope="col">"Status"</th>
                                        <th scope="col">"MFA"</th><th scope="col">"Last sign-in"</th><th scope="col">"Actions"</th>
                                    </tr></thead>
                                    <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                                </table>
                            </div>
                        }.into_any(),
                        Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="panel">
            <h2>"Invite a user"</h2>
            <p class="hint">"The person receives a single-use link, valid for 72 hours, to choose a password. They set up two-step verification at first sign-in."</p>
            <ActionForm action=invite attr:class="form-grid">
                <label for="invite-email">"Email"</label>
                <input id="invite-email" name="email" type="email" required autocomplete="off"/>
                <FieldError error=invite_error field="email" label="Email"/>
                <label for="invite-name">"Name"</label>
                <input id="invite-name" name="display_name" type="text" maxlength="100" autocomplete="off"/>
                <FieldError error=invite_error field="name" label="Name"/>
                <label for="invite-role">"Role"</label>
                <select id="invite-role" name="role">
                    <option value="marketer" selected>"Marketer"</option>
                    <option value="analyst">"Analyst"</option>
                    <option value="admin">"Administrator"</option>
                </select>
                <div></div>
                <button type="submit" class="primary" disabled=move || !hydrated.get() || invite.pending().get()>"Send invitation"</button>
            </ActionForm>
            <ErrorMessage error=unplaced(invite_error, &["email", "name"])/>
            {move || invite_value.get().and_then(Result::ok).map(|created| view! {
                <div class="alert success" role="status" data-test="invite-created">
                    <p>"Invitation sent to " <strong>{created.email.clone()}</strong> "."</p>
                    <p class="hint">"The link in it works once, until " {format_time(created.expires_at)} ". Inviting the address again (or \"Send again\" above) sends a new link and the old one stops working."</p>
                </div>
            })}
        </section>
    }
}
