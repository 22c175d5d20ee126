-- Campaigns and their deliveries.
--
-- A campaign's editable settings (audience, template, sender, delivery policy, schedule, throttle)
-- are one JSON document, validated by domain::campaigns::CampaignSettings; the columns the sending
-- pipeline filters on are real columns. At launch the audience is resolved into one delivery row per
-- (campaign, contact), unique, and those rows are the whole truth of what was sent: jobs only carry
-- ids. Rendered messages are never stored (they are rendered again from the pinned version).

CREATE TABLE campaign (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL REFERENCES organisation (id),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    status              text NOT NULL CHECK (status IN
                            ('draft', 'scheduled', 'sending', 'paused', 'completed', 'cancelled', 'failed')),
    pause_reason        text CHECK (pause_reason IN ('manual', 'error_streak')),
    settings            jsonb NOT NULL,
    -- Pinned when the campaign is scheduled or launched: the exact version every recipient gets.
    template_version_id uuid,
    uses_phi            boolean NOT NULL DEFAULT false,
    -- When sending starts (schedule "at"), or the earliest local time (schedule "local time").
    scheduled_at        timestamptz,
    -- Set once every delivery row exists (audience resolution is resumable until then).
    audience_ready      boolean NOT NULL DEFAULT false,
    audience_size       integer,
    -- Consecutive failed sends (for auto-pause); reset by every success.
    error_streak        integer NOT NULL DEFAULT 0,
    -- Global throttle across every worker (a GCRA clock): each claim of n messages reserves
    -- n / rate seconds of this timeline and waits for its start.
    send_clock          timestamptz,
    -- Bumped by every resume: dispatch jobs of an older generation stop.
    generation          integer NOT NULL DEFAULT 0,
    started_at          timestamptz,
    finished_at         timestamptz,
    created_by          uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    UNIQUE (organisation_id, id),
    FOREIGN KEY (organisation_id, template_version_id) REFERENCES template_version (organisation_id, id)
);
CREATE UNIQUE INDEX campaign_name ON campaign (organisation_id, lower(name));
CREATE INDEX campaign_status ON campaign (status) WHERE status IN ('scheduled', 'sending');

CREATE TABLE delivery (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL,
    campaign_id     uuid NOT NULL,
    -- NULL once the contact is erased; the row stays for the campaign's totals.
    contact_id      uuid REFERENCES contact (id) ON DELETE SET NULL,
    state           text NOT NULL CHECK (state IN
                        ('queued', 'sending', 'sent', 'deferred', 'bounced', 'failed', 'skipped', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    -- Not sent before this instant: the recipient's local time, or a retry's back-off.
    not_before      timestamptz NOT NULL,
    -- The send worker holding the row while it is 'sending' (a PostgreSQL advisory-lock key the
    -- worker holds for its lifetime: when the lock is free, the worker is dead and the row is
    -- handed back).
    claimed_by      bigint,
    claimed_at      timestamptz,
    -- A keyed hash of the recipient's domain (never the domain itself), for per-domain caps.
    domain_key      bytea,
    -- The SMTP status code and enhanced code only: reply texts can quote the address.
    smtp_status     text,
    -- Why a row was skipped or failed, in fixed words (never contact data).
    detail          text,
    -- When the SMTP server accepted the message (our clock, right after its reply) and when that
    -- was committed: the difference is the duplicate window a crash could hit.
    accepted_at     timestamptz,
    recorded_at     timestamptz,
    updated_at      timestamptz NOT NULL,
    UNIQUE (campaign_id, contact_id),
    UNIQUE (organisation_id, id),
    FOREIGN KEY (organisation_id, campaign_id) REFERENCES campaign (organisation_id, id) ON DELETE CASCADE
);
CREATE INDEX delivery_due ON delivery (campaign_id, not_before) WHERE state IN ('queued', 'deferred');
CREATE INDEX delivery_claimed ON delivery (claimed_by) WHERE state = 'sending';
CREATE INDEX delivery_state ON delivery (campaign_id, state);

-- Per-domain caps (messages per minute per recipient domain), a GCRA clock per domain.
CREATE TABLE campaign_domain_clock (
    campaign_id     uuid NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    domain_key      bytea NOT NULL,
    clock           timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, domain_key)
);

-- The links of a campaign's pinned version, by position: click tokens carry (delivery, position),
-- never a URL, so the redirect can only go where the campaign's own content points.
CREATE TABLE campaign_link (
    campaign_id     uuid NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    position        integer NOT NULL CHECK (position >= 0),
    url             text NOT NULL,
    PRIMARY KEY (campaign_id, position)
);

-- Engagement gains the delivery, the clicked link, why an event was judged a machine's, and
-- bounces and unsubscribes (the campaign report counts them).
ALTER TABLE engagement_event DROP CONSTRAINT engagement_event_activity_check;
ALTER TABLE engagement_event ADD CONSTRAINT engagement_event_activity_check
    CHECK (activity IN ('received', 'opened', 'clicked', 'bounced', 'unsubscribed'));
ALTER TABLE engagement_event ADD COLUMN delivery_id uuid;
ALTER TABLE engagement_event ADD COLUMN link_position integer;
ALTER TABLE engagement_event ADD COLUMN machine_reason text
    CHECK (machine_reason IN ('prefetch', 'privacy_proxy', 'scanner'));
CREATE INDEX engagement_delivery ON engagement_event (delivery_id, activity);
