//! Open and click tracking with opaque tokens, and the batched event recorder.
//!
//! A token is the organisation's data key sealing (AES-256-GCM-SIV: the tag is the signature)
//! `[kind][delivery id: 16][link position: u16 BE][expires: i64 BE]`. Nothing in a tracking URL is
//! readable — no contact, address, campaign or target URL — and a click token names a *position*
//! among the pinned version's own links, so the redirect can only go where the campaign's content
//! already pointed (no open redirect). Every failure to open a token is the same `NotFound`.
//!
//! Events are buffered and written in batches (one INSERT per flush); each is classified as a
//! person's or a machine's (privacy proxies, link scanners, prefetch) by the pure rules in
//! `domain::campaigns`, using the delivery's acceptance time and the other clicks on the message.

use crate::crypto::keyring::DataKey;
use crate::crypto::seal::Aad;
use crate::db;
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use data_encoding::BASE64URL_NOPAD;
use domain::breakdowns::ClientFamily;
use domain::engagement::{MachineReason, PREFETCH_SECS, classify_click, classify_open};
use domain::ids::OrganisationId;
use sea_orm::sqlx;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// How long tracking links work.
pub const TRACKING_TTL_DAYS: i64 = 365;
const PAYLOAD_LEN: usize = 1 + 16 + 2 + 8;
/// Most links tracked per message (the rest are left as written).
pub const MAX_LINKS: usize = 200;
/// Events buffered before a flush is forced.
const FLUSH_EVENTS: usize = 1000;
/// Longest an event waits in the buffer.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Open,
    Click,
}

impl Track {
    fn code(self) -> u8 {
        match self {
            Track::Open => 1,
            Track::Click => 2,
        }
    }
    fn column(self) -> &'static str {
        match self {
            Track::Open => "open",
            Track::Click => "click",
        }
    }
}

fn aad(org: OrganisationId, kind: Track) -> Aad<'static> {
    Aad { organisation: org, table: "tracking", column: kind.column(), row: Uuid::nil() }
}

pub fn token(
    key: &DataKey,
    org: OrganisationId,
    kind: Track,
    delivery: Uuid,
    position: u16,
    now: DateTime<Utc>,
) -> ServiceResult<String> {
    let mut p = Vec::with_capacity(PAYLOAD_LEN);
    p.push(kind.code());
    p.extend_from_slice(delivery.as_bytes());
    p.extend_from_slice(&position.to_be_bytes());
    p.extend_from_slice(&(now + Duration::days(TRACKING_TTL_DAYS)).timestamp().to_be_bytes());
    Ok(BASE64URL_NOPAD.encode(key.seal(&aad(org, kind), &p)?.as_bytes()))
}

/// A verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub organisation: OrganisationId,
    pub delivery: Uuid,
    pub position: u16,
}

pub async fn open_token(svc: &Services, kind: Track, token: &str, now: DateTime<Utc>) -> ServiceResult<Claims> {
    let bad = || ServiceError::NotFound;
    let (org, p) = crate::links::open_sealed(svc, token, |org| aad(org, kind), PAYLOAD_LEN, kind.code()).await?;
    let delivery = Uuid::from_slice(&p[1..17]).map_err(|_| bad())?;
    let position = u16::from_be_bytes([p[17], p[18]]);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&p[19..27]);
    if DateTime::from_timestamp(i64::from_be_bytes(exp), 0).is_none_or(|e| e <= now) {
        return Err(bad());
    }
    Ok(Claims { organisation: org, delivery, position })
}

/// A link of the template source that is tracked: its attribute text as written (what the
/// rendered HTML contains) and the URL it means (entities decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedLink {
    pub raw: String,
    pub url: String,
}

fn decode_entities(s: &str) -> String {
    s.replace("&amp;", "&").replace("&#38;", "&").replace("&#x26;", "&").replace("&quot;", "\"").replace("&#39;", "'")
}

/// The links worth tracking in a version's HTML: static `http(s)` hrefs (no merge tags — a
/// personalised URL may carry patient data and is never stored), not our own system links,
/// deduplicated in order of appearance.
pub fn trackable_links(html: &str, public_url: &str) -> Vec<String> {
    tracked_links(html, public_url).into_iter().map(|l| l.url).collect()
}

pub fn tracked_links(html: &str, public_url: &str) -> Vec<TrackedLink> {
    let mut out: Vec<TrackedLink> = Vec::new();
    let mut seen = HashSet::new();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = lower[at..].find("href=") {
        let start = at + i + 5;
        at = start;
        let Some(q) = html[start..].chars().next() else { break };
        if q != '"' && q != '\'' {
            continue;
        }
        let Some(len) = html[start + 1..].find(q) else { break };
        let raw = &html[start + 1..start + 1 + len];
        at = start + 1 + len;
        let url = decode_entities(raw.trim());
        let l = url.to_ascii_lowercase();
        if !(l.starts_with("https://") || l.starts_with("http://"))
            || raw.contains("{{")
            || url.starts_with(public_url.trim_end_matches('/'))
            || url.chars().any(|c| c.is_control() || c == ' ')
        {
            continue;
        }
        if seen.insert(raw.to_string()) {
            out.push(TrackedLink { raw: raw.to_string(), url });
            if out.len() >= MAX_LINKS {
                break;
            }
        }
    }
    out
}

/// Rewrite a rendered message for tracking: each tracked link's href becomes a click URL with a
/// token for (delivery, position), and an open pixel goes before `</body>`.
pub fn instrument(
    html: &str,
    links: &[TrackedLink],
    public_url: &str,
    key: &DataKey,
    org: OrganisationId,
    delivery: Uuid,
    now: DateTime<Utc>,
) -> ServiceResult<String> {
    let base = public_url.trim_end_matches('/');
    let mut out = html.to_string();
    for (pos, link) in links.iter().enumerate() {
        let tok = token(key, org, Track::Click, delivery, pos as u16, now)?;
        let url = format!("{base}/t/c/{tok}");
        for q in ['"', '\''] {
            out = out.replace(&format!("href={q}{}{q}", link.raw), &format!("href={q}{url}{q}"));
        }
    }
    let pixel = format!(
        "<img src=\"{base}/t/o/{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0\">",
        token(key, org, Track::Open, delivery, 0, now)?
    );
    match out.rfind("</body>") {
        Some(i) => out.insert_str(i, &pixel),
        None => out.push_str(&pixel),
    }
    Ok(out)
}

/// One tracking hit, as the web edge saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub kind: Track,
    pub claims: Claims,
    /// User agents are not PHI; only used to classify, never stored.
    pub user_agent: Option<String>,
    /// HEAD requests come from scanners, not people.
    pub head: bool,
    pub at: DateTime<Utc>,
}

/// Where a click goes: the stored URL at the token's position, when the delivery belongs to the
/// token's organisation. Only http(s) targets are ever returned.
pub async fn click_target(svc: &Services, c: &Claims) -> ServiceResult<String> {
    #[derive(sea_orm::FromQueryResult)]
    struct Target {
        url: String,
    }
    let url: String = db::one_as::<Target, _>(
        svc.db(),
        "SELECT coalesce(l.url, m.url) AS url FROM delivery d
         LEFT JOIN campaign_link l ON l.campaign_id = d.campaign_id AND l.position = $3
         LEFT JOIN api_message_link m ON m.message_id = d.id AND d.source = 'api_message' AND m.position = $3
         WHERE d.id = $1 AND d.organisation_id = $2 AND coalesce(l.url, m.url) IS NOT NULL",
        [c.delivery.into(), c.organisation.0.into(), i32::from(c.position).into()],
    )
    .await?
    .map(|r| r.url)
    .ok_or(ServiceError::NotFound)?;
    let l = url.to_ascii_lowercase();
    if l.starts_with("https://") || l.starts_with("http://") { Ok(url) } else { Err(ServiceError::NotFound) }
}

/// The process's event buffer: the web edge pushes, a background task flushes in batches. Owned
/// by the web server that runs it and handed to the tracking handlers.
pub struct Recorder {
    tx: tokio::sync::mpsc::Sender<Hit>,
    /// Hits dropped because the buffer was full (the pixel and the redirect never wait).
    dropped: std::sync::atomic::AtomicU64,
}

impl Recorder {
    /// Start the flusher with the default buffer (ten flushes' worth of hits). Without a
    /// recorder (tests that never start one), hits are written at once.
    pub fn spawn(svc: Services, shutdown: tokio::sync::watch::Receiver<bool>) -> Recorder {
        Recorder::with_capacity(svc, shutdown, FLUSH_EVENTS * 10)
    }

    /// Hits dropped so far because the buffer was full (logged as they happen, in counts only).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Start the flusher with a buffer of `capacity` hits.
    pub fn with_capacity(svc: Services, mut shutdown: tokio::sync::watch::Receiver<bool>, capacity: usize) -> Recorder {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Hit>(capacity.max(1));
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(FLUSH_EVENTS);
            loop {
                let stop = tokio::select! {
                    got = rx.recv() => match got { Some(h) => { buf.push(h); false } None => true },
                    _ = tokio::time::sleep(FLUSH_EVERY) => false,
                    _ = shutdown.wait_for(|s| *s) => true,
                };
                while buf.len() < FLUSH_EVENTS {
                    match rx.try_recv() {
                        Ok(h) => buf.push(h),
                        Err(_) => break,
                    }
                }
                if !buf.is_empty()
                    && let Err(e) = flush(&svc, std::mem::take(&mut buf)).await
                {
                    tracing::error!(error = %e.log_detail(), "tracking events could not be recorded");
                }
                if stop {
                    break;
                }
            }
        });
        Recorder { tx, dropped: std::sync::atomic::AtomicU64::new(0) }
    }
}

/// Record a hit: through the buffer when one runs, else at once.
pub async fn record(svc: &Services, recorder: Option<&Recorder>, hit: Hit) -> ServiceResult<()> {
    match recorder {
        Some(r) => {
            // A full buffer drops the event rather than slowing the pixel or the redirect; the
            // drop is counted and logged (every 100th, to keep a flood from flooding the log).
            if r.tx.try_send(hit).is_err() {
                let n = r.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(100) {
                    tracing::warn!(dropped = n, "tracking buffer full: engagement events dropped");
                }
            }
            Ok(())
        }
        None => flush(svc, vec![hit]).await,
    }
}

/// (delivery, organisation, campaign (none for an API message), contact, accepted at, links in
/// the message).
type DeliveryFacts = (Uuid, Uuid, Option<Uuid>, Option<Uuid>, Option<DateTime<Utc>>, i64);

/// Classify and insert a batch of hits (one query to read, one to write). Hits buffered before
/// their organisation was deleted are dropped.
pub async fn flush(svc: &Services, hits: Vec<Hit>) -> ServiceResult<()> {
    let ids: Vec<Uuid> = hits.iter().map(|h| h.claims.delivery).collect::<HashSet<_>>().into_iter().collect();
    let rows: Vec<DeliveryFacts> = sqlx::query_as(
        "SELECT d.id, d.organisation_id, d.campaign_id, d.contact_id, d.accepted_at,
                CASE WHEN d.campaign_id IS NULL
                     THEN (SELECT count(*) FROM api_message_link m WHERE m.message_id = d.id)
                     ELSE (SELECT count(*) FROM campaign_link l WHERE l.campaign_id = d.campaign_id) END
         FROM delivery d JOIN organisation o ON o.id = d.organisation_id AND o.deleted_at IS NULL
         WHERE d.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&db::pool(svc.db()))
    .await
    .map_err(db::sqlx_err)?;
    let info: HashMap<Uuid, _> = rows.into_iter().map(|r| (r.0, r)).collect();
    let earliest = hits.iter().map(|h| h.at).min().unwrap_or_else(|| svc.clock().now());
    // Clicks already recorded on these messages in the scan window.
    let prior: Vec<(Uuid, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT delivery_id, link_position, occurred_at FROM engagement_event
         WHERE delivery_id = ANY($1) AND activity = 'clicked' AND occurred_at > $2",
    )
    .bind(&ids)
    .bind(earliest - Duration::seconds(PREFETCH_SECS))
    .fetch_all(&db::pool(svc.db()))
    .await
    .map_err(db::sqlx_err)?;
    let mut clicks: HashMap<Uuid, Vec<(u16, DateTime<Utc>)>> = HashMap::new();
    for (d, p, at) in prior {
        clicks.entry(d).or_default().push((p.max(0) as u16, at));
    }
    for h in hits.iter().filter(|h| h.kind == Track::Click) {
        clicks.entry(h.claims.delivery).or_default().push((h.claims.position, h.at));
    }
    let (mut org, mut contact, mut campaign, mut activity, mut machine, mut reason, mut at, mut delivery, mut position) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    // An open's client family (a code; the user agent itself is not kept).
    let mut client: Vec<Option<i16>> = vec![];
    // Messages whose every link was clicked within seconds: a scanner; their earlier clicks too.
    let mut scanned: Vec<Uuid> = Vec::new();
    for h in &hits {
        let Some((_, d_org, d_campaign, d_contact, accepted, links)) = info.get(&h.claims.delivery) else { continue };
        if *d_org != h.claims.organisation.0 {
            continue;
        }
        let Some(d_contact) = d_contact else { continue };
        let secs = accepted.map(|a| (h.at - a).num_seconds());
        let ua = h.user_agent.as_deref();
        let (act, why) = match h.kind {
            Track::Open => ("opened", classify_open(ua, secs)),
            Track::Click => {
                let window = h.at - Duration::seconds(PREFETCH_SECS);
                let distinct = clicks
                    .get(&h.claims.delivery)
                    .map(|v| {
                        v.iter()
                            .filter(|(_, t)| *t > window && *t <= h.at)
                            .map(|(p, _)| *p)
                            .collect::<HashSet<_>>()
                            .len()
                    })
                    .unwrap_or(1) as u32;
                let why = if h.head {
                    Some(MachineReason::Scanner)
                } else {
                    classify_click(ua, secs, distinct, (*links).max(0) as u32)
                };
                if why == Some(MachineReason::Scanner) && distinct >= 2 && distinct as i64 >= *links {
                    scanned.push(h.claims.delivery);
                }
                ("clicked", why)
            }
        };
        org.push(*d_org);
        contact.push(*d_contact);
        campaign.push(*d_campaign);
        activity.push(act.to_string());
        machine.push(why.is_some());
        reason.push(why.map(|r| r.as_str().to_string()));
        at.push(h.at);
        delivery.push(h.claims.delivery);
        position.push(match h.kind {
            Track::Click => Some(i32::from(h.claims.position)),
            Track::Open => None,
        });
        client.push(match h.kind {
            Track::Open => ClientFamily::of_user_agent(ua).map(ClientFamily::code),
            Track::Click => None,
        });
    }
    let mut tx = db::pool(svc.db()).begin().await.map_err(db::sqlx_err)?;
    if !org.is_empty() {
        // The hits and their webhooks (`message.opened`, `message.clicked`: ids, the machine
        // classification and the link's position, nothing else) in one statement.
        let sql = format!(
            "WITH ev AS (
                 INSERT INTO engagement_event
                     (organisation_id, contact_id, campaign_id, activity, machine, machine_reason, occurred_at, delivery_id, link_position, client)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[], $6::text[], $7::timestamptz[], $8::uuid[], $9::int[], $11::int2[])
                 RETURNING organisation_id, contact_id, campaign_id, activity, machine, machine_reason, occurred_at, delivery_id, link_position),
             facts AS (
                 SELECT organisation_id, 'message.' || activity AS event_type,
                        jsonb_build_object('message_id', delivery_id, 'campaign_id', campaign_id, 'contact_id', contact_id,
                            'machine', machine, 'machine_reason', machine_reason, 'link', link_position,
                            'occurred_at', occurred_at) AS data
                 FROM ev),
             {}
             SELECT 1",
            crate::webhooks::enqueue_cte("facts", "$10")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&org)
            .bind(&contact)
            .bind(&campaign)
            .bind(&activity)
            .bind(&machine)
            .bind(&reason)
            .bind(&at)
            .bind(&delivery)
            .bind(&position)
            .bind(svc.clock().now())
            .bind(&client)
            .execute(&mut *tx)
            .await
            .map_err(db::sqlx_err)?;
    }
    if !scanned.is_empty() {
        sqlx::query(
            "UPDATE engagement_event SET machine = true, machine_reason = 'scanner'
             WHERE delivery_id = ANY($1) AND activity = 'clicked' AND occurred_at > $2 AND NOT machine",
        )
        .bind(&scanned)
        .bind(earliest - Duration::seconds(PREFETCH_SECS))
        .execute(&mut *tx)
        .await
        .map_err(db::sqlx_err)?;
    }
    // A person's first open or click of a campaign's email starts the live sequences that wait
    // for it (a signal each; machine opens and scanner clicks never count, nor later ones).
    if !org.is_empty() {
        sqlx::query(
            "INSERT INTO sequence_signal (organisation_id, contact_id, kind, ref_id, created_at)
             SELECT DISTINCT e.organisation_id, e.contact_id, 'campaign_' || e.activity, e.campaign_id, $3::timestamptz
             FROM engagement_event e
             WHERE e.delivery_id = ANY($1) AND e.occurred_at >= $2 AND NOT e.machine AND e.campaign_id IS NOT NULL
               AND e.activity IN ('opened', 'clicked')
               AND EXISTS (SELECT 1 FROM sequence_version v JOIN sequence s ON s.current_version_id = v.id
                           WHERE v.trigger_ref = e.campaign_id AND v.trigger_kind = 'campaign_' || e.activity
                             AND s.status = 'active')
               AND NOT EXISTS (SELECT 1 FROM engagement_event p WHERE p.delivery_id = e.delivery_id
                               AND p.activity = e.activity AND NOT p.machine AND p.occurred_at < $2)",
        )
        .bind(&delivery)
        .bind(earliest)
        .bind(svc.clock().now())
        .execute(&mut *tx)
        .await
        .map_err(db::sqlx_err)?;
    }
    // A sequence waiting for an open or click of one of these emails wakes now (the engine
    // re-reads the engagement; a waking enrolment that is not waiting for it sleeps again).
    let human: Vec<uuid::Uuid> = delivery.iter().zip(&machine).filter(|(_, m)| !**m).map(|(d, _)| *d).collect();
    if !human.is_empty() {
        sqlx::query(
            "UPDATE enrolment e SET wake_at = LEAST(e.wake_at, $2)
             FROM api_message m WHERE m.id = ANY($1) AND e.id = m.enrolment_id AND e.state = 'active'",
        )
        .bind(&human)
        .bind(svc.clock().now())
        .execute(&mut *tx)
        .await
        .map_err(db::sqlx_err)?;
    }
    tx.commit().await.map_err(db::sqlx_err)?;
    Ok(())
}

/// A 1×1 transparent GIF.
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_static_external_links_are_tracked() {
        let html = r#"<a href="https://clinic.example/a?x=1&amp;y=2">A</a>
            <a href='http://clinic.example/b'>B</a>
            <a href="https://clinic.example/a?x=1&amp;y=2">again</a>
            <a href="{{links.unsubscribe}}">unsub</a>
            <a href="https://clinic.example/p/{{contact.first_name}}">personal</a>
            <a href="mailto:front@clinic.example">mail</a>
            <a href="https://app.example/l/view/x">ours</a>
            <a href=https://unquoted.example>u</a>"#;
        let links = tracked_links(html, "https://app.example");
        assert_eq!(
            links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
            ["https://clinic.example/a?x=1&y=2", "http://clinic.example/b"]
        );
        assert_eq!(links[0].raw, "https://clinic.example/a?x=1&amp;y=2");
    }

    #[test]
    fn instrumenting_replaces_links_and_adds_a_pixel() {
        let key = DataKey::for_benchmark([7; 32]);
        let org = OrganisationId::new();
        let html = r#"<html><body><a href="https://clinic.example/a">A</a></body></html>"#;
        let links = tracked_links(html, "https://app.example");
        let d = Uuid::new_v4();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let out = instrument(html, &links, "https://app.example/", &key, org, d, now).unwrap();
        assert!(!out.contains("clinic.example"), "{out}");
        assert!(out.contains("href=\"https://app.example/t/c/"));
        assert!(out.contains("<img src=\"https://app.example/t/o/"));
        assert!(out.find("/t/o/").unwrap() < out.find("</body>").unwrap());
        assert!(!out.contains(&d.to_string()));
    }
}
