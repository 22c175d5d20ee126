//! Operator commands (`server admin …`): create organisations and users, reset MFA, disable users,
//! seed the demo organisation, verify the audit trail. Each acts through the service layer as a
//! system actor, so every change is audited like any other.

use crate::ServerError;
use domain::Role;
use domain::ids::OrganisationId;
use service::Services;
use service::actor::Actor;

pub fn generate_password() -> Result<String, ServerError> {
    // 256 random bits, URL-safe: passes every policy rule and is printed once.
    Ok(service::crypto::random_token()?)
}

/// The organisation named (or the only one).
pub async fn organisation(svc: &Services, org: Option<&str>) -> Result<OrganisationId, ServerError> {
    org_by_name_or_only(svc, org).await
}

async fn org_by_name_or_only(svc: &Services, org: Option<&str>) -> Result<OrganisationId, ServerError> {
    if let Some(o) = org {
        if let Ok(id) = o.parse::<OrganisationId>() {
            return Ok(id);
        }
        return service::organisations::find_by_name(svc, o)
            .await?
            .ok_or_else(|| ServerError::Service(format!("no organisation named '{o}'")));
    }
    let ids: Vec<uuid::Uuid> =
        service::db::scalars(svc.db(), "SELECT id FROM organisation WHERE deleted_at IS NULL LIMIT 2", [])
            .await
            .map_err(service::ServiceError::from)?;
    match ids.as_slice() {
        [one] => Ok(OrganisationId(*one)),
        [] => Err(ServerError::Service("there is no organisation yet: run `server admin create-org --name …`".into())),
        _ => Err(ServerError::Service("several organisations exist: name one with --org".into())),
    }
}

pub async fn create_org(svc: &Services, name: &str) -> Result<OrganisationId, ServerError> {
    Ok(service::organisations::create(svc, name).await?)
}

pub async fn create_user(
    svc: &Services,
    org: Option<&str>,
    email: &str,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), ServerError> {
    let org = org_by_name_or_only(svc, org).await?;
    service::users::create_with_password(svc, &Actor::system(org, "cli"), email, name, role, password).await?;
    Ok(())
}

pub async fn reset_mfa(svc: &Services, email: &str) -> Result<(), ServerError> {
    let (org, user) = service::users::find_for_operator(svc, email).await?;
    service::users::reset_mfa(svc, &Actor::system(org, "cli"), user).await?;
    Ok(())
}

pub async fn disable_user(svc: &Services, email: &str) -> Result<(), ServerError> {
    let (org, user) = service::users::find_for_operator(svc, email).await?;
    service::users::disable(svc, &Actor::system(org, "cli"), user).await?;
    Ok(())
}

/// Returns a one-line summary per chain; Err if any chain is broken.
pub async fn verify_audit(svc: &Services) -> Result<Vec<String>, ServerError> {
    let reports = service::audit::verify_all(svc).await?;
    let mut lines = Vec::new();
    let mut broken = false;
    for (chain, r) in reports {
        match r.first_broken {
            None => lines.push(format!("chain {chain}: ok ({} entries)", r.rows_checked)),
            Some(b) => {
                broken = true;
                lines.push(format!("chain {chain}: BROKEN at entry {}: {}", b.seq, b.reason));
            }
        }
    }
    if broken {
        return Err(ServerError::Service(lines.join("\n")));
    }
    Ok(lines)
}

/// Re-wrap every key under the root key this process is configured with (the rolling procedure:
/// the new key as `root_key_file`, the old one in `previous_root_key_files`), or under the key in
/// `new_key_file` (the old procedure: every other process must then be restarted with it). Returns
/// one line per root key still holding live keys afterwards.
pub async fn rotate_root_key(
    svc: &Services,
    new_key_file: Option<&std::path::Path>,
) -> Result<(service::crypto::rotation::RootRotation, Vec<String>), ServerError> {
    let done = match new_key_file {
        Some(path) => {
            let key = crate::config::load_key_file(path)?;
            let rewrapped = service::crypto::rotation::rotate_root(svc, key).await?;
            let (current, _) = service::crypto::rotation::keys_per_root(svc).await?;
            service::crypto::rotation::RootRotation {
                rewrapped,
                previous_root_key_id: svc.keys().root_key_id().to_string(),
                root_key_id: current,
            }
        }
        None => service::crypto::rotation::rotate_root_to_configured(svc).await?,
    };
    let (current, per_root) = service::crypto::rotation::keys_per_root(svc).await?;
    let lines = per_root
        .into_iter()
        .map(|(id, n)| format!("root key {id}{}: {n} live keys", if id == current { " (current)" } else { "" }))
        .collect();
    Ok((done, lines))
}

pub async fn rotate_data_key(svc: &Services, org: Option<&str>) -> Result<uuid::Uuid, ServerError> {
    let org = org_by_name_or_only(svc, org).await?;
    Ok(service::crypto::rotation::start_data_rotation(svc, &Actor::system(org, "cli")).await?)
}

/// The organisation's sending domain of that name, added (key and selector generated) unless it
/// already has it.
pub async fn add_sending_domain(
    svc: &Services,
    org: Option<&str>,
    domain: &str,
) -> Result<domain::sending_domains::SendingDomainView, ServerError> {
    let org = org_by_name_or_only(svc, org).await?;
    let actor = Actor::system(org, "cli");
    if let Some(d) = service::sending_domains::find(svc, &actor, domain).await? {
        return Ok(d);
    }
    Ok(service::sending_domains::add(svc, &actor, domain).await?)
}

/// Check a sending domain's DNS records now (the real check: through the configured resolver).
pub async fn verify_sending_domain(
    svc: &Services,
    org: Option<&str>,
    domain: &str,
) -> Result<domain::sending_domains::SendingDomainView, ServerError> {
    let org = org_by_name_or_only(svc, org).await?;
    let actor = Actor::system(org, "cli");
    let d = service::sending_domains::find(svc, &actor, domain)
        .await?
        .ok_or_else(|| ServerError::Service(format!("the organisation has no sending domain '{domain}'")))?;
    Ok(service::sending_domains::verify(svc, &actor, d.id).await?)
}

pub async fn delete_org(svc: &Services, org: &str, confirm: &str) -> Result<u64, ServerError> {
    if org.trim() != confirm.trim() {
        return Err(ServerError::Service("--confirm must repeat the organisation name exactly".into()));
    }
    let id = service::organisations::find_by_name(svc, org)
        .await?
        .ok_or_else(|| ServerError::Service(format!("no organisation named '{org}'")))?;
    Ok(service::crypto::rotation::delete_organisation(svc, id).await?)
}

/// Report history for an organisation (`server admin demo-reports`): synthetic patients when it
/// has fewer than `contacts`, then `service::reports::demo::generate`, then the rollup.
pub async fn demo_reports(
    svc: &Services,
    org: OrganisationId,
    events: u64,
    campaigns: usize,
    days: i64,
    contacts: usize,
) -> Result<service::reports::demo::Generated, ServerError> {
    if !(1..=500).contains(&campaigns) || !(1..=366).contains(&days) || contacts > 100_000 || events > 50_000_000 {
        return Err(ServerError::Service(
            "--campaigns 1..500, --days 1..366, --contacts up to 100,000, --events up to 50,000,000".into(),
        ));
    }
    let have: i64 =
        service::db::scalar(svc.db(), "SELECT count(*) FROM contact WHERE organisation_id = $1", [org.0.into()])
            .await
            .map_err(service::ServiceError::from)?
            .unwrap_or(0);
    let actor = Actor::system(org, "cli");
    for i in usize::try_from(have).unwrap_or(0)..contacts {
        let input = domain::contacts::ContactInput {
            fields: [("email".to_string(), domain::Phi::new(format!("patient{i}@demo-patients.hermetic.test")))]
                .into_iter()
                .collect(),
        };
        service::contacts::create(svc, &actor, input).await?;
    }
    let spec = service::reports::demo::Spec { events, campaigns, days, audience_share: 0.85 };
    let mut g = service::reports::demo::generate(svc, org.0, &spec, svc.clock().now()).await?;
    // The live sequences' emails get history too (a fifth as many events).
    if let (seqs, Some(version)) = service::reports::demo::live_sequences(svc, org.0).await? {
        let spec = service::reports::demo::Spec { events: events / 5, campaigns: 0, days, audience_share: 0.4 };
        let s =
            service::reports::demo::generate_sequences(svc, org.0, &seqs, version, &spec, svc.clock().now()).await?;
        g.deliveries += s.deliveries;
        g.events += s.events;
    }
    service::reports::rollup::catch_up(svc, service::reports::rollup::BATCH).await?;
    Ok(g)
}
