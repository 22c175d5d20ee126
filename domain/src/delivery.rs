//! Delivery: one message to one recipient, from whatever source (a campaign now; a sequence step
//! and an API message next). Its state machine, the retry back-off, and the one function that turns
//! what the mail transport answered into the next state (`after_attempt`): the send path decides
//! nothing by itself, so the exhaustive tests below cover what it does.
//!
//! Nothing here reads the clock or draws random numbers (`jitter` is a parameter).

use crate::DomainError;
use chrono::Duration;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Delivery (one row per message × recipient) state machine
// ---------------------------------------------------------------------------------------------

/// Where one recipient's message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Sending,
    Sent,
    Deferred,
    Bounced,
    Failed,
    Skipped,
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 8] = [
        DeliveryState::Queued,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Deferred,
        DeliveryState::Bounced,
        DeliveryState::Failed,
        DeliveryState::Skipped,
        DeliveryState::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Deferred => "deferred",
            DeliveryState::Bounced => "bounced",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
            DeliveryState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        DeliveryState::ALL.into_iter().find(|d| d.as_str() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            DeliveryState::Queued => "Queued",
            DeliveryState::Sending => "Sending",
            DeliveryState::Sent => "Sent",
            DeliveryState::Deferred => "Waiting to retry",
            DeliveryState::Bounced => "Bounced",
            DeliveryState::Failed => "Failed",
            DeliveryState::Skipped => "Skipped",
            DeliveryState::Cancelled => "Cancelled",
        }
    }
    /// Never sent (again): a final row is not retried.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Sent
                | DeliveryState::Bounced
                | DeliveryState::Failed
                | DeliveryState::Skipped
                | DeliveryState::Cancelled
        )
    }
    /// Waiting for a worker to claim it.
    pub fn is_pending(self) -> bool {
        matches!(self, DeliveryState::Queued | DeliveryState::Deferred)
    }

    /// The one place delivery state changes are decided. Unlisted edges are refused.
    pub fn transition(self, event: DeliveryEvent) -> Result<DeliveryState, DomainError> {
        use DeliveryEvent as E;
        use DeliveryState as S;
        match (self, event) {
            (S::Queued | S::Deferred, E::Claim) => Ok(S::Sending),
            (S::Sending, E::Accepted) => Ok(S::Sent),
            // `attempts` counts the attempt that just failed; once the budget is spent we give up
            // rather than retry forever.
            (S::Sending, E::TempFailure { attempts, max_attempts }) => {
                Ok(if attempts < max_attempts { S::Deferred } else { S::Failed })
            }
            (S::Sending, E::PermFailure { hard_bounce: true }) => Ok(S::Bounced),
            (S::Sending, E::PermFailure { hard_bounce: false }) => Ok(S::Failed),
            // The recipient unsubscribed, was suppressed or withdrew consent after launch: the
            // check is repeated right before each send, and a pending row is skipped, not sent.
            (S::Queued | S::Deferred, E::Skip) => Ok(S::Skipped),
            (S::Queued | S::Deferred, E::Cancel) => Ok(S::Cancelled),
            // A worker died (or lost its lease) mid-send and the row is handed back to the queue.
            // This is where the unavoidable duplicate window lives: if the SMTP server had already
            // accepted the message before the worker died, sending it again duplicates it. No
            // protocol closes that window; keeping leases short and marking `Sent` right after the
            // server's reply keeps it small.
            (S::Sending, E::Reclaim) => Ok(S::Queued),
            (S::Sending, E::TransportUnavailable) => Ok(S::Deferred),
            (from, event) => Err(DomainError::Transition(format!("{} cannot {}", from.phrase(), event.verb()))),
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            DeliveryState::Queued => "a queued message",
            DeliveryState::Sending => "a message that is being sent",
            DeliveryState::Sent => "a message that was already sent",
            DeliveryState::Deferred => "a message waiting to retry",
            DeliveryState::Bounced => "a bounced message",
            DeliveryState::Failed => "a failed message",
            DeliveryState::Skipped => "a skipped message",
            DeliveryState::Cancelled => "a cancelled message",
        }
    }
}

/// Something that happens to one delivery row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeliveryEvent {
    /// A worker takes the row to send it.
    Claim,
    /// The SMTP server accepted the message.
    Accepted,
    /// A 4xx reply or a connection problem; `attempts` includes the one that just failed.
    TempFailure { attempts: u32, max_attempts: u32 },
    /// A 5xx reply; a hard bounce (unknown mailbox) also suppresses the address.
    PermFailure { hard_bounce: bool },
    /// The recipient may no longer be mailed.
    Skip,
    /// The campaign was cancelled.
    Cancel,
    /// The claiming worker is gone, or the row is not its turn yet (a per-domain limit); hand the
    /// row back.
    Reclaim,
    /// The message never reached a mail server (the transport is closed or could not take it):
    /// not the message's fault, so it waits and tries again without using up its attempts' budget.
    TransportUnavailable,
}

impl DeliveryEvent {
    fn verb(self) -> &'static str {
        match self {
            DeliveryEvent::Claim => "be picked up for sending",
            DeliveryEvent::Accepted => "be marked as sent",
            DeliveryEvent::TempFailure { .. } => "be marked for a retry",
            DeliveryEvent::PermFailure { .. } => "be marked as undeliverable",
            DeliveryEvent::Skip => "be skipped",
            DeliveryEvent::Cancel => "be cancelled",
            DeliveryEvent::Reclaim => "be handed back to the queue",
            DeliveryEvent::TransportUnavailable => "wait for the mail transport",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------------------------

/// How temporary failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    pub base_secs: u32,
    pub cap_secs: u32,
}

impl Default for RetryPolicy {
    /// Six attempts spread over roughly an hour and a half (1, 2, 4, 8, 16 minutes, capped at one hour).
    fn default() -> Self {
        RetryPolicy { max_attempts: 6, base_secs: 60, cap_secs: 3600 }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based; 0 is treated as 1):
    /// `base · 2^(attempt−1)`, capped at `cap`, then scaled by `0.5 + jitter/2` so that retries of a
    /// whole batch spread out instead of hitting the remote server together. `jitter` in `[0, 1]` comes
    /// from the caller (the domain draws no random numbers); it is clamped, and NaN counts as 1.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        // base < 2^32 and the shift is at most 32, so this cannot overflow a u64.
        let exp = attempt.saturating_sub(1).min(32);
        let secs = (u64::from(self.base_secs) << exp).min(u64::from(self.cap_secs));
        let jitter = if jitter.is_nan() { 1.0 } else { jitter.clamp(0.0, 1.0) };
        // secs ≤ u32::MAX, so the milliseconds fit an i64 with room to spare.
        let millis = (secs as f64 * 1000.0 * (0.5 + jitter / 2.0)).round() as i64;
        Duration::milliseconds(millis)
    }
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/// What a delivery row was created for. Each source adds its rows to the one delivery queue; the
/// sending pipeline (composition, transport, outcome) is the same for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverySource {
    /// One recipient of a campaign (`delivery.campaign_id`).
    Campaign,
    /// A transactional message an integration asked for (`POST /api/v1/messages`); the delivery's
    /// id is the `api_message` row's, and `campaign_id` is NULL.
    ApiMessage,
    /// An email step of a sequence: like an API message, an `api_message` row (with its
    /// enrolment and step) and a delivery of the same id.
    SequenceStep,
}

impl DeliverySource {
    pub const ALL: [DeliverySource; 3] =
        [DeliverySource::Campaign, DeliverySource::ApiMessage, DeliverySource::SequenceStep];
    /// The value of the `source` column of `delivery` and `delivery_queue`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliverySource::Campaign => "campaign",
            DeliverySource::ApiMessage => "api_message",
            DeliverySource::SequenceStep => "sequence_step",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        DeliverySource::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

// ---------------------------------------------------------------------------------------------
// From the transport's answer to the next state
// ---------------------------------------------------------------------------------------------

/// What happened to one attempt, as the send path saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// The mail server accepted the message (2xx after DATA).
    Accepted,
    /// A permanent refusal (5xx), with its status: the code and, when given, the enhanced code
    /// (`550 5.1.1`). Never the reply text, which can quote the recipient.
    Rejected(&'a str),
    /// A temporary refusal (4xx) or a lost connection after the hand-over began.
    Deferred,
    /// The message never reached a mail server (the pool is closed or the hand-over failed).
    TransportUnavailable,
    /// The message could not be built for this recipient (an invalid address, a template that no
    /// longer renders): retrying cannot help.
    Unbuildable,
}

/// The next state of a delivery after an attempt, and what the send path does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub state: DeliveryState,
    /// When to try again (only for `Deferred`), from the moment the answer arrived.
    pub retry_in: Option<Duration>,
    /// Counts toward the campaign's auto-pause streak (connection, TLS, 4xx, refusals that are not
    /// hard bounces).
    pub error: bool,
    /// What the marketer reads about the row (plain words, never the server's reply text).
    pub detail: Option<&'static str>,
}

/// How long a message waits when the transport itself was unavailable.
pub const TRANSPORT_RETRY_SECS: i64 = 60;

/// Which permanent replies mean the address does not exist (RFC 3463 `5.1.x`, "bad destination
/// mailbox address"; without an enhanced code, the classic 550/551/553 replies): such a row is a hard
/// bounce and the address is suppressed. Policy refusals (`5.7.x`), full mailboxes (`5.2.2`) and
/// unknown codes are not: they fail the row but keep the address.
pub fn is_hard_bounce(status: &str) -> bool {
    let mut parts = status.split_whitespace();
    let code = parts.next().unwrap_or("");
    let enhanced = parts.next().unwrap_or("");
    enhanced.starts_with("5.1.") || (enhanced.is_empty() && matches!(code, "550" | "551" | "553"))
}

/// Decide the next state of a delivery that was being sent (`Sending`), from what happened,
/// `attempts` (this attempt included) and the retry policy, through `DeliveryState::transition`:
/// the one place the send path's outcomes are decided. `jitter` in `[0, 1]` spreads retries.
pub fn after_attempt(attempt: Attempt<'_>, attempts: u32, policy: &RetryPolicy, jitter: f64) -> Next {
    let event = match attempt {
        Attempt::Accepted => DeliveryEvent::Accepted,
        Attempt::Rejected(status) => DeliveryEvent::PermFailure { hard_bounce: is_hard_bounce(status) },
        Attempt::Deferred => DeliveryEvent::TempFailure { attempts, max_attempts: policy.max_attempts },
        Attempt::TransportUnavailable => DeliveryEvent::TransportUnavailable,
        Attempt::Unbuildable => DeliveryEvent::PermFailure { hard_bounce: false },
    };
    // Every event above has an edge from `Sending` (the exhaustive test pins this), so the
    // fallback is unreachable; it fails the row rather than retrying it forever.
    let state = DeliveryState::Sending.transition(event).unwrap_or(DeliveryState::Failed);
    let (retry_in, detail) = match (state, attempt) {
        (DeliveryState::Sent, _) => (None, None),
        (DeliveryState::Bounced, _) => (None, Some("the address does not exist (hard bounce)")),
        (DeliveryState::Deferred, Attempt::TransportUnavailable) => (
            Some(Duration::seconds(TRANSPORT_RETRY_SECS)),
            Some("the message could not be handed to the mail transport"),
        ),
        (DeliveryState::Deferred, _) => {
            (Some(policy.backoff(attempts, jitter)), Some("the mail server asked us to try later"))
        }
        (_, Attempt::Unbuildable) => (None, Some("the message could not be built for this contact")),
        (_, Attempt::Deferred) => (None, Some("temporary failures on every attempt")),
        _ => (None, Some("the mail server refused the message")),
    };
    Next { error: !matches!(state, DeliveryState::Sent | DeliveryState::Bounced), state, retry_in, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_transitions_exhaustive() {
        use DeliveryEvent as E;
        use DeliveryState as S;
        let events = [
            E::Claim,
            E::Accepted,
            E::TempFailure { attempts: 1, max_attempts: 6 },
            E::TempFailure { attempts: 5, max_attempts: 6 },
            E::TempFailure { attempts: 6, max_attempts: 6 },
            E::TempFailure { attempts: 9, max_attempts: 6 },
            E::TempFailure { attempts: 1, max_attempts: 0 },
            E::PermFailure { hard_bounce: true },
            E::PermFailure { hard_bounce: false },
            E::Skip,
            E::Cancel,
            E::Reclaim,
            E::TransportUnavailable,
        ];
        let allowed = [
            (S::Queued, E::Claim, S::Sending),
            (S::Deferred, E::Claim, S::Sending),
            (S::Sending, E::Accepted, S::Sent),
            (S::Sending, E::TempFailure { attempts: 1, max_attempts: 6 }, S::Deferred),
            (S::Sending, E::TempFailure { attempts: 5, max_attempts: 6 }, S::Deferred),
            (S::Sending, E::TempFailure { attempts: 6, max_attempts: 6 }, S::Failed),
            (S::Sending, E::TempFailure { attempts: 9, max_attempts: 6 }, S::Failed),
            (S::Sending, E::TempFailure { attempts: 1, max_attempts: 0 }, S::Failed),
            (S::Sending, E::PermFailure { hard_bounce: true }, S::Bounced),
            (S::Sending, E::PermFailure { hard_bounce: false }, S::Failed),
            (S::Queued, E::Skip, S::Skipped),
            (S::Deferred, E::Skip, S::Skipped),
            (S::Queued, E::Cancel, S::Cancelled),
            (S::Deferred, E::Cancel, S::Cancelled),
            (S::Sending, E::Reclaim, S::Queued),
            (S::Sending, E::TransportUnavailable, S::Deferred),
        ];
        let mut ok = 0;
        for from in S::ALL {
            for event in events {
                let expected = allowed.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
                match (from.transition(event), expected) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{from:?} + {event:?}");
                        ok += 1;
                    }
                    (Err(DomainError::Transition(msg)), None) => assert!(msg.contains("cannot"), "{msg}"),
                    (got, want) => panic!("{from:?} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(ok, allowed.len());
        // A final row never moves again: nothing can resend a sent message.
        for s in S::ALL.into_iter().filter(|s| s.is_final()) {
            assert!(events.into_iter().all(|e| s.transition(e).is_err()), "{s:?} must be final");
        }
        assert_eq!(
            S::Sent.transition(E::Claim),
            Err(DomainError::Transition("a message that was already sent cannot be picked up for sending".into()))
        );
    }

    #[test]
    fn delivery_event_json_shape() {
        let e = DeliveryEvent::TempFailure { attempts: 2, max_attempts: 6 };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"kind":"temp_failure","attempts":2,"max_attempts":6}"#);
        assert_eq!(serde_json::from_str::<DeliveryEvent>(&json).unwrap(), e);
    }

    #[test]
    fn backoff_grows_caps_and_never_overflows() {
        let p = RetryPolicy::default();
        assert_eq!(p, RetryPolicy { max_attempts: 6, base_secs: 60, cap_secs: 3600 });
        assert_eq!(p.backoff(1, 1.0), Duration::seconds(60));
        assert_eq!(p.backoff(1, 0.0), Duration::seconds(30));
        assert_eq!(p.backoff(1, 0.5), Duration::seconds(45));
        assert_eq!(p.backoff(0, 1.0), Duration::seconds(60), "attempt 0 counts as the first");
        assert_eq!(p.backoff(2, 1.0), Duration::seconds(120));
        assert_eq!(p.backoff(6, 1.0), Duration::seconds(1920));
        assert_eq!(p.backoff(7, 1.0), Duration::seconds(3600), "3840 s is capped");
        for attempt in [33, 64, 1000, u32::MAX] {
            assert_eq!(p.backoff(attempt, 1.0), Duration::seconds(3600));
            assert_eq!(p.backoff(attempt, 0.0), Duration::seconds(1800));
        }
        // Out-of-range jitter is clamped; NaN is treated as the full delay.
        assert_eq!(p.backoff(1, 7.0), Duration::seconds(60));
        assert_eq!(p.backoff(1, -3.0), Duration::seconds(30));
        assert_eq!(p.backoff(1, f64::INFINITY), Duration::seconds(60));
        assert_eq!(p.backoff(1, f64::NEG_INFINITY), Duration::seconds(30));
        assert_eq!(p.backoff(1, f64::NAN), Duration::seconds(60));
        // Extreme settings stay finite and non-negative.
        let huge = RetryPolicy { max_attempts: u32::MAX, base_secs: u32::MAX, cap_secs: u32::MAX };
        assert_eq!(huge.backoff(u32::MAX, 1.0), Duration::seconds(i64::from(u32::MAX)));
        let zero = RetryPolicy { max_attempts: 1, base_secs: 0, cap_secs: 0 };
        assert_eq!(zero.backoff(5, 1.0), Duration::zero());
        // Monotonic in the attempt number for a fixed jitter.
        let waits: Vec<_> = (1..=10).map(|a| p.backoff(a, 0.3)).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn hard_bounces_are_unknown_mailboxes_only() {
        for hard in ["550 5.1.1", "550 5.1.10", "553 5.1.3", "551 5.1.6", "550", "551", "553", "554 5.1.2"] {
            assert!(is_hard_bounce(hard), "{hard}");
        }
        for not in [
            "550 5.7.1",  // policy (spam, DMARC)
            "552 5.2.2",  // mailbox full
            "554 5.7.26", // unauthenticated sender
            "554",        // transaction failed, no detail
            "552",
            "550 5.0.0",
            "",
            "garbage",
            "5.1.1",     // an enhanced code without a reply code is not a reply
            "421 4.1.1", // temporary
        ] {
            assert!(!is_hard_bounce(not), "{not:?}");
        }
    }

    #[test]
    fn after_attempt_goes_through_the_state_machine() {
        let p = RetryPolicy::default();
        let next = |a, n| after_attempt(a, n, &p, 1.0);
        assert_eq!(
            next(Attempt::Accepted, 1),
            Next { state: DeliveryState::Sent, retry_in: None, error: false, detail: None }
        );
        let hard = next(Attempt::Rejected("550 5.1.1"), 1);
        assert_eq!((hard.state, hard.error, hard.retry_in), (DeliveryState::Bounced, false, None));
        let refused = next(Attempt::Rejected("550 5.7.1"), 1);
        assert_eq!((refused.state, refused.error, refused.retry_in), (DeliveryState::Failed, true, None));
        assert_eq!(refused.detail, Some("the mail server refused the message"));
        // 4xx: retried with the policy's back-off until the budget is spent, then failed.
        for n in 1..p.max_attempts {
            let d = next(Attempt::Deferred, n);
            assert_eq!(d.state, DeliveryState::Deferred, "attempt {n}");
            assert_eq!(d.retry_in, Some(p.backoff(n, 1.0)));
            assert!(d.error);
        }
        for n in [p.max_attempts, p.max_attempts + 1, u32::MAX] {
            let d = next(Attempt::Deferred, n);
            assert_eq!((d.state, d.retry_in), (DeliveryState::Failed, None), "attempt {n}");
            assert_eq!(d.detail, Some("temporary failures on every attempt"));
        }
        // The transport being down never fails a row, however many attempts it has.
        for n in [1, p.max_attempts, u32::MAX] {
            let d = next(Attempt::TransportUnavailable, n);
            assert_eq!(d.state, DeliveryState::Deferred);
            assert_eq!(d.retry_in, Some(Duration::seconds(TRANSPORT_RETRY_SECS)));
            assert!(d.error);
        }
        let u = next(Attempt::Unbuildable, 1);
        assert_eq!((u.state, u.error), (DeliveryState::Failed, true));
        assert_eq!(u.detail, Some("the message could not be built for this contact"));
        // A policy of one attempt never retries.
        let once = RetryPolicy { max_attempts: 1, ..p };
        assert_eq!(after_attempt(Attempt::Deferred, 1, &once, 0.0).state, DeliveryState::Failed);
        // Every outcome ends in a state `Sending` can reach.
        for a in [
            Attempt::Accepted,
            Attempt::Rejected("550 5.1.1"),
            Attempt::Rejected("451"),
            Attempt::Deferred,
            Attempt::TransportUnavailable,
            Attempt::Unbuildable,
        ] {
            let n = next(a, 2);
            assert!(DeliveryState::ALL.contains(&n.state));
            assert_eq!(n.retry_in.is_some(), n.state == DeliveryState::Deferred, "{a:?}");
        }
    }

    #[test]
    fn sources_round_trip() {
        for s in DeliverySource::ALL {
            assert_eq!(DeliverySource::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliverySource::parse("Campaign"), None);
    }
}
