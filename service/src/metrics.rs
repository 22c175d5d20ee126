//! Operational metrics: every series Hermetic exports (name, unit, help text, labels) and the
//! functions the crates record through. The `server` crate installs the Prometheus recorder and
//! serves `/metrics`; until a recorder is installed (unit tests, the CLI) recording is a no-op.
//!
//! Invariant: **no label value comes from a request, a row or a person.** Every label parameter
//! below is a `&'static str` from a small closed set written in the source (route templates of the
//! route table, HTTP method names, status classes, problem codes, delivery states, queue names), so
//! no id, address, key or organisation can become a label, and no series exists per contact.
//!
//! Recording is an atomic add on a handle the recorder keeps: no database round trip, no lock of
//! ours. The send path records a batch's outcomes once per batch, after their write committed.

use domain::delivery::DeliveryState;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use std::time::Duration;

/// Requests by route template (`/api/v1/events`, `/contacts/{id}`; `unmatched` for anything the
/// route table lacks), method and status class (`2xx` …).
pub const HTTP_REQUESTS: &str = "hermetic_http_requests_total";
/// Request latency by route template and method, in seconds.
pub const HTTP_DURATION: &str = "hermetic_http_request_duration_seconds";
/// Events recorded through the event API (`/api/v1/events`, `/api/v1/events/batch`).
pub const EVENTS_ACCEPTED: &str = "hermetic_api_events_accepted_total";
/// Events refused, by the answer's stable problem `code`.
pub const EVENTS_REJECTED: &str = "hermetic_api_events_rejected_total";
/// Items per batch recorded through `/api/v1/events/batch` (not replays, not bodies refused whole).
pub const EVENT_BATCH_SIZE: &str = "hermetic_api_event_batch_size";
/// Transactional messages accepted through `POST /api/v1/messages` (not replays, not refusals).
pub const MESSAGES_ACCEPTED: &str = "hermetic_api_messages_accepted_total";
/// Delivery outcomes recorded (campaigns and API messages), by the state the delivery row went to.
pub const DELIVERY_OUTCOMES: &str = "hermetic_delivery_outcomes_total";
/// Messages handed to the SMTP client for a relay (every kind of mail, one per attempt: a retry
/// is a new hand-over; what became of campaign mail is in [`DELIVERY_OUTCOMES`]).
pub const SMTP_MESSAGES: &str = "hermetic_smtp_messages_total";
/// Background jobs run, by queue.
pub const JOB_RUNS: &str = "hermetic_job_runs_total";
/// Background job runs that failed (retried or given up), by queue.
pub const JOB_FAILURES: &str = "hermetic_job_failures_total";
/// Rows of the delivery queue, read at scrape time: `due` (waiting, sendable now), `waiting`
/// (retry or per-domain back-off not yet over), `claimed` (held by a sending process).
pub const DELIVERY_QUEUE: &str = "hermetic_delivery_queue_rows";
/// Jobs in the job queue, read at scrape time, by queue and state: `due` (waiting, runnable now),
/// `scheduled` (waiting for a later time), `running` (taken by a worker: queued in it or running).
pub const JOB_QUEUE: &str = "hermetic_job_queue_jobs";
/// Scrapes whose queue depths could not be read (the depth gauges then keep their last values).
pub const QUEUE_READ_FAILURES: &str = "hermetic_queue_depth_read_failures_total";
/// Webhook delivery attempts, by outcome: `delivered` (2xx), `retry` (failed, tried again later),
/// `failed` (given up after 24 h), `disabled` (410 Gone: the endpoint was turned off), `refused`
/// (the endpoint's address is not public: no request was made).
pub const WEBHOOK_DELIVERIES: &str = "hermetic_webhook_deliveries_total";
/// Webhook retries scheduled (each failed attempt that will be tried again).
pub const WEBHOOK_RETRIES: &str = "hermetic_webhook_retries_total";
/// Always 1, labelled with the version of the running binary.
pub const BUILD_INFO: &str = "hermetic_build_info";

/// Latency buckets: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Batch-size buckets: 1 to the batch limit (1,000).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Give every series its help text and unit, and publish the build info. Call once, after the
/// recorder is installed.
pub fn describe(version: &'static str) {
    describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests by route template, method and status class.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency by route template and method.");
    describe_counter!(EVENTS_ACCEPTED, Unit::Count, "Events recorded through the event API.");
    describe_counter!(
        EVENTS_REJECTED,
        Unit::Count,
        "Events refused by the event API, by problem code (per item in a batch; a request refused as a whole counts once)."
    );
    describe_histogram!(
        EVENT_BATCH_SIZE,
        Unit::Count,
        "Items per event batch recorded (replays and bodies refused whole are not counted)."
    );
    describe_counter!(MESSAGES_ACCEPTED, Unit::Count, "Transactional messages accepted through the message API.");
    describe_counter!(
        DELIVERY_OUTCOMES,
        Unit::Count,
        "Delivery outcomes recorded (campaigns and API messages), by resulting state."
    );
    describe_counter!(SMTP_MESSAGES, Unit::Count, "Messages handed to the SMTP client (one per attempt).");
    describe_counter!(JOB_RUNS, Unit::Count, "Background job runs, by queue.");
    describe_counter!(JOB_FAILURES, Unit::Count, "Background job runs that failed, by queue.");
    describe_gauge!(
        DELIVERY_QUEUE,
        Unit::Count,
        "Delivery queue rows by state (due, waiting, claimed), read at scrape."
    );
    describe_gauge!(
        JOB_QUEUE,
        Unit::Count,
        "Job queue entries by queue and state (due, scheduled, running), read at scrape."
    );
    describe_counter!(QUEUE_READ_FAILURES, Unit::Count, "Scrapes whose queue depths could not be read.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "Webhook delivery attempts by outcome (delivered, retry, failed, disabled, refused)."
    );
    describe_counter!(WEBHOOK_RETRIES, Unit::Count, "Webhook retries scheduled.");
    describe_gauge!(BUILD_INFO, "Always 1; the label names the running version.");
    gauge!(BUILD_INFO, "version" => version).set(1.0);
}

/// `2xx` … `5xx` (anything else: `other`).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The method as a label from a closed set (extension methods are `other`).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Webhook outcome labels (closed set).
pub mod webhook_outcome {
    pub const DELIVERED: &str = "delivered";
    pub const RETRY: &str = "retry";
    pub const FAILED: &str = "failed";
    pub const DISABLED: &str = "disabled";
    pub const REFUSED: &str = "refused";
}

/// One webhook attempt finished with `outcome` (one of [`webhook_outcome`]); a retry also counts
/// in [`WEBHOOK_RETRIES`].
pub fn webhook_attempt(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
    if outcome == webhook_outcome::RETRY {
        counter!(WEBHOOK_RETRIES).increment(1);
    }
}

/// One HTTP request answered.
pub fn http_request(route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
    counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status_class(status)).increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed.as_secs_f64());
}

pub fn events_accepted(n: u64) {
    if n > 0 {
        counter!(EVENTS_ACCEPTED).increment(n);
    }
}

/// `n` events refused with problem `code` (one of `domain::api::problem`'s constants).
pub fn events_rejected(code: &'static str, n: u64) {
    if n > 0 {
        counter!(EVENTS_REJECTED, "code" => code).increment(n);
    }
}

/// One transactional message accepted (its delivery's outcome is counted in [`DELIVERY_OUTCOMES`]).
pub fn message_accepted() {
    counter!(MESSAGES_ACCEPTED).increment(1);
}

pub fn event_batch(items: usize) {
    histogram!(EVENT_BATCH_SIZE).record(items as f64);
}

/// Tallies a batch of delivery outcomes locally, then records each state once.
#[derive(Default)]
pub struct OutcomeTally([u64; DeliveryState::ALL.len()]);

impl OutcomeTally {
    pub fn add(&mut self, state: DeliveryState) {
        if let Some(i) = DeliveryState::ALL.iter().position(|s| *s == state) {
            self.0[i] += 1;
        }
    }

    pub fn record(&self) {
        for (state, n) in DeliveryState::ALL.iter().zip(self.0) {
            if n > 0 {
                counter!(DELIVERY_OUTCOMES, "state" => state.as_str()).increment(n);
            }
        }
    }
}

/// One message handed to the SMTP relay.
pub fn smtp_message() {
    counter!(SMTP_MESSAGES).increment(1);
}

/// One job of `queue` (a `outbox::Job::QUEUE`) finished.
pub fn job_finished(queue: &'static str, ok: bool) {
    counter!(JOB_RUNS, "queue" => queue).increment(1);
    if !ok {
        counter!(JOB_FAILURES, "queue" => queue).increment(1);
    }
}

/// The delivery queue's depth, read at scrape time (`campaigns::send::queue_depth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryQueueDepth {
    pub due: i64,
    pub waiting: i64,
    pub claimed: i64,
}

pub fn delivery_queue(d: DeliveryQueueDepth) {
    gauge!(DELIVERY_QUEUE, "state" => "due").set(d.due as f64);
    gauge!(DELIVERY_QUEUE, "state" => "waiting").set(d.waiting as f64);
    gauge!(DELIVERY_QUEUE, "state" => "claimed").set(d.claimed as f64);
}

/// One queue's depth in the job queue (`outbox::depths`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobQueueDepth {
    pub queue: &'static str,
    pub due: i64,
    pub scheduled: i64,
    pub running: i64,
}

/// Set every queue's gauges (a queue without entries reads 0, not its last value).
pub fn job_queues(depths: &[JobQueueDepth]) {
    for d in depths {
        gauge!(JOB_QUEUE, "queue" => d.queue, "state" => "due").set(d.due as f64);
        gauge!(JOB_QUEUE, "queue" => d.queue, "state" => "scheduled").set(d.scheduled as f64);
        gauge!(JOB_QUEUE, "queue" => d.queue, "state" => "running").set(d.running as f64);
    }
}

pub fn queue_read_failed() {
    counter!(QUEUE_READ_FAILURES).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_closed_sets() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(999), "other");
        assert_eq!(method_label("PUT"), "PUT");
        assert_eq!(method_label("BREW"), "other");
        // Without a recorder, recording is a no-op (the CLI and unit tests never install one).
        let mut t = OutcomeTally::default();
        t.add(DeliveryState::Sent);
        t.add(DeliveryState::Sent);
        assert_eq!(t.0[DeliveryState::ALL.iter().position(|s| *s == DeliveryState::Sent).unwrap()], 2);
        t.record();
        http_request("/healthz", "GET", 200, Duration::from_millis(3));
    }

    #[test]
    fn buckets_are_increasing_and_span_1ms_to_10s() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(BATCH_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((LATENCY_BUCKETS[0], LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1]), (0.001, 10.0));
        assert_eq!(BATCH_BUCKETS[BATCH_BUCKETS.len() - 1], domain::api::MAX_EVENTS_PER_BATCH as f64);
    }
}
