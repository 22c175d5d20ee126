//! System links — unsubscribe, view in browser, preferences — as opaque signed tokens.
//!
//! A token is the organisation's data key sealing (AES-256-GCM-SIV, an authenticated cipher: the
//! tag is the signature) a tiny payload: what the link does, who it is for, what message it came
//! from, and when it expires. Nothing in the URL is readable (no contact id, no address, no
//! campaign), a flipped bit or a token made for another link kind fails to open, and destroying an
//! organisation's keys (crypto-shredding) kills its links with everything else.
//!
//! Byte layout before sealing: `[kind][subject kind][subject id: 16][message ref: 16][expires: i64 BE]`.

use crate::crypto::keyring::{DataKey, KeyPurpose};
use crate::crypto::seal::{Aad, Sealed};
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use data_encoding::BASE64URL_NOPAD;
use domain::ids::OrganisationId;
use uuid::Uuid;

/// How long a system link works. Unsubscribe links must keep working long after a send (CAN-SPAM
/// asks for at least 30 days); a year covers people who read old mail.
pub const LINK_TTL_DAYS: i64 = 365;
const PAYLOAD_LEN: usize = 1 + 1 + 16 + 16 + 8;
/// Longest token accepted before any decoding (a sealed payload is 86 bytes, 115 characters).
const MAX_TOKEN_CHARS: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Unsubscribe,
    ViewInBrowser,
    Preferences,
}

impl LinkKind {
    pub const ALL: [LinkKind; 3] = [LinkKind::Unsubscribe, LinkKind::ViewInBrowser, LinkKind::Preferences];
    fn code(self) -> u8 {
        match self {
            LinkKind::Unsubscribe => 1,
            LinkKind::ViewInBrowser => 2,
            LinkKind::Preferences => 3,
        }
    }
    /// The merge variable (`links.<name>`) and the URL path segment.
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Unsubscribe => "unsubscribe",
            LinkKind::ViewInBrowser => "view_in_browser",
            LinkKind::Preferences => "preferences",
        }
    }
    fn path(self) -> &'static str {
        match self {
            LinkKind::Unsubscribe => "/l/unsubscribe/",
            LinkKind::ViewInBrowser => "/l/view/",
            LinkKind::Preferences => "/l/preferences/",
        }
    }
    fn column(self) -> &'static str {
        match self {
            LinkKind::Unsubscribe => "unsubscribe",
            LinkKind::ViewInBrowser => "view_in_browser",
            LinkKind::Preferences => "preferences",
        }
    }
}

/// Who a link acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSubject {
    /// A contact, from a message built from `message` (a template version or a campaign).
    Contact { contact: Uuid, message: Uuid },
    /// A staff member's test send of a template version: the link explains and changes nothing.
    Test { user: Uuid, message: Uuid },
}

/// An opened, verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClaims {
    pub organisation: OrganisationId,
    pub kind: LinkKind,
    pub subject: LinkSubject,
    pub expires_at: DateTime<Utc>,
}

fn aad(org: OrganisationId, kind: LinkKind) -> Aad<'static> {
    Aad { organisation: org, table: "system_link", column: kind.column(), row: Uuid::nil() }
}

/// Make the token for one link.
pub async fn token(
    svc: &Services,
    org: OrganisationId,
    kind: LinkKind,
    subject: LinkSubject,
    now: DateTime<Utc>,
) -> ServiceResult<String> {
    let key = svc.keys().active_key(svc.db(), svc.clock(), Some(org), KeyPurpose::Data).await?;
    token_with(&key, org, kind, subject, now)
}

/// Make a token with an already loaded data key (the sending pipeline seals many per message).
pub fn token_with(
    key: &DataKey,
    org: OrganisationId,
    kind: LinkKind,
    subject: LinkSubject,
    now: DateTime<Utc>,
) -> ServiceResult<String> {
    let (sk, id, message) = match subject {
        LinkSubject::Contact { contact, message } => (1u8, contact, message),
        LinkSubject::Test { user, message } => (2u8, user, message),
    };
    let mut p = Vec::with_capacity(PAYLOAD_LEN);
    p.push(kind.code());
    p.push(sk);
    p.extend_from_slice(id.as_bytes());
    p.extend_from_slice(message.as_bytes());
    p.extend_from_slice(&(now + Duration::days(LINK_TTL_DAYS)).timestamp().to_be_bytes());
    let sealed = key.seal(&aad(org, kind), &p)?;
    Ok(BASE64URL_NOPAD.encode(sealed.as_bytes()))
}

/// The three system links for one message, as the `links` object a template renders with.
pub(crate) async fn links_json(
    svc: &Services,
    org: OrganisationId,
    subject: LinkSubject,
    now: DateTime<Utc>,
) -> ServiceResult<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for kind in LinkKind::ALL {
        m.insert(kind.name().into(), url(svc, kind, &token(svc, org, kind, subject, now).await?).into());
    }
    Ok(serde_json::Value::Object(m))
}

pub fn url(svc: &Services, kind: LinkKind, token: &str) -> String {
    url_at(&svc.settings().public_url, kind, token)
}

pub fn url_at(public_url: &str, kind: LinkKind, token: &str) -> String {
    format!("{}{}{}", public_url.trim_end_matches('/'), kind.path(), token)
}

/// Open any sealed URL token (system links, tracking): decode, find its organisation's data key,
/// open it under the associated data `aad` builds, and check its length and leading kind byte.
/// Every failure — malformed, oversized, forged, bit-flipped, another kind, a shredded key — is
/// the same `NotFound`, so a probe learns nothing.
pub(crate) async fn open_sealed(
    svc: &Services,
    token: &str,
    aad: impl Fn(OrganisationId) -> Aad<'static>,
    len: usize,
    kind: u8,
) -> ServiceResult<(OrganisationId, zeroize::Zeroizing<Vec<u8>>)> {
    let bad = || ServiceError::NotFound;
    if token.len() > MAX_TOKEN_CHARS {
        return Err(bad());
    }
    let bytes = BASE64URL_NOPAD.decode(token.as_bytes()).map_err(|_| bad())?;
    let sealed = Sealed::from_bytes(bytes).map_err(|_| bad())?;
    let key = svc.keys().key_by_id(svc.db(), sealed.key_id()).await.map_err(|_| bad())?;
    let org = match (key.organisation, key.purpose) {
        (Some(org), KeyPurpose::Data) => org,
        _ => return Err(bad()),
    };
    let p = key.open(&aad(org), &sealed).map_err(|_| bad())?;
    if p.len() != len || p[0] != kind {
        return Err(bad());
    }
    Ok((org, p))
}

/// Open a token for `kind` (see `open_sealed`; an expired token is `NotFound` too).
pub async fn open(svc: &Services, kind: LinkKind, token: &str, now: DateTime<Utc>) -> ServiceResult<LinkClaims> {
    let bad = || ServiceError::NotFound;
    let (org, p) = open_sealed(svc, token, |org| aad(org, kind), PAYLOAD_LEN, kind.code()).await?;
    let id = Uuid::from_slice(&p[2..18]).map_err(|_| bad())?;
    let message = Uuid::from_slice(&p[18..34]).map_err(|_| bad())?;
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&p[34..42]);
    let expires_at = DateTime::from_timestamp(i64::from_be_bytes(exp), 0).ok_or_else(bad)?;
    if expires_at <= now {
        return Err(bad());
    }
    let subject = match p[1] {
        1 => LinkSubject::Contact { contact: id, message },
        2 => LinkSubject::Test { user: id, message },
        _ => return Err(bad()),
    };
    Ok(LinkClaims { organisation: org, kind, subject, expires_at })
}
