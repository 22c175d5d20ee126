-- Analyst reports read hourly aggregates, not raw events (issue 23), so a dashboard costs the
-- same at ten million events as at ten thousand.
--
-- Every fact a report counts is captured, from every path that writes it, by statement-level
-- triggers into `report_pending`: an engagement event (open, click, unsubscribe), a delivery
-- reaching or leaving a final outcome (sent, bounced, failed: -1 for the old one, +1 for the new),
-- and a suppression added, changed or lifted. The rollup job (`service::reports::rollup`) consumes
-- pending rows exactly once, in one transaction per batch, into the hour tables. No contact id,
-- address or property value is copied: a pending row names a delivery, an activity and a time.

-- Reports bucket hours and days in the organisation's own time zone (an IANA name, validated by
-- the service with chrono-tz). A change marks the rollups for a rebuild in the new zone.
ALTER TABLE organisation ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC'
    CHECK (length(time_zone) BETWEEN 1 AND 64);
ALTER TABLE organisation ADD COLUMN report_rebuild_requested_at timestamptz;
-- A user who asked for the weekly report digest (their own setting).
ALTER TABLE app_user ADD COLUMN report_digest boolean NOT NULL DEFAULT false;

CREATE TABLE report_pending (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    -- 1 engagement event, 2 delivery outcome, 3 suppression, 4 deferral (a retry scheduled)
    kind            smallint NOT NULL CHECK (kind IN (1, 2, 3, 4)),
    delivery_id     uuid,
    campaign_id     uuid,
    -- engagement: opened | clicked | unsubscribed; delivery: sent | bounced | failed;
    -- suppression: its reason
    activity        text NOT NULL,
    machine         boolean NOT NULL DEFAULT false,
    -- A click's link (its position among the message's tracked links).
    link_position   integer,
    -- A bounce's class (hermetic_bounce_class).
    detail          text,
    at              timestamptz NOT NULL,
    sign            smallint NOT NULL DEFAULT 1 CHECK (sign IN (-1, 1))
);

-- The first human open, machine open, human click and unsubscribe of each delivery (by time):
-- unique figures ("messages opened") add up across hours because each message counts once, at
-- its first such event. A later-processed but earlier event moves the count to its hour.
CREATE TABLE report_first (
    organisation_id uuid NOT NULL,
    delivery_id uuid NOT NULL,
    -- 1 human open, 2 machine open, 3 human click, 4 unsubscribe; 100 + p: human click on link p
    kind        smallint NOT NULL CHECK (kind BETWEEN 1 AND 4 OR kind BETWEEN 100 AND 299),
    at          timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, kind)
);
CREATE INDEX report_first_organisation ON report_first (organisation_id);

-- One row per organisation, local hour and source (1 campaign: source_id = campaign;
-- 2 sequence email: source_id = sequence, step_id = the step; 3 API message: nil source).
-- `hour` is the wall-clock hour in the organisation's time zone (so a day is a range of hours in
-- any zone, half-hour offsets included; the repeated hour of a daylight-saving change holds both).
CREATE TABLE report_hour (
    organisation_id uuid NOT NULL,
    hour            timestamp NOT NULL,
    source_kind     smallint NOT NULL CHECK (source_kind IN (1, 2, 3)),
    source_id       uuid NOT NULL,
    step_id         text NOT NULL DEFAULT '',
    sent            bigint NOT NULL DEFAULT 0,
    delivered       bigint NOT NULL DEFAULT 0,
    bounced         bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    human_openers   bigint NOT NULL DEFAULT 0,
    machine_opens   bigint NOT NULL DEFAULT 0,
    machine_openers bigint NOT NULL DEFAULT 0,
    human_clicks    bigint NOT NULL DEFAULT 0,
    human_clickers  bigint NOT NULL DEFAULT 0,
    machine_clicks  bigint NOT NULL DEFAULT 0,
    unsubscribes    bigint NOT NULL DEFAULT 0,
    bounced_hard    bigint NOT NULL DEFAULT 0,
    bounced_soft    bigint NOT NULL DEFAULT 0,
    bounced_policy  bigint NOT NULL DEFAULT 0,
    deferrals       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organisation_id, hour, source_kind, source_id, step_id)
);
CREATE INDEX report_hour_source ON report_hour (organisation_id, source_kind, source_id, hour);

-- Opens and clicks by hours since the message was accepted (first human open / click of each
-- delivery; 720 = thirty days or later), per source: the drill-down's curve and the comparison's
-- overlay. Independent of the time zone.
CREATE TABLE report_since (
    organisation_id uuid NOT NULL,
    source_kind     smallint NOT NULL CHECK (source_kind IN (1, 2, 3)),
    source_id       uuid NOT NULL,
    step_id         text NOT NULL DEFAULT '',
    hours           integer NOT NULL CHECK (hours BETWEEN 0 AND 720),
    human_openers   bigint NOT NULL DEFAULT 0,
    human_clickers  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organisation_id, source_kind, source_id, step_id, hours)
);

-- Clicks per tracked link of a source (position; the URL is the campaign's or message's own).
CREATE TABLE report_link (
    organisation_id uuid NOT NULL,
    source_kind     smallint NOT NULL CHECK (source_kind IN (1, 2, 3)),
    source_id       uuid NOT NULL,
    step_id         text NOT NULL DEFAULT '',
    position        integer NOT NULL CHECK (position >= 0),
    human_clicks    bigint NOT NULL DEFAULT 0,
    human_clickers  bigint NOT NULL DEFAULT 0,
    machine_clicks  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organisation_id, source_kind, source_id, step_id, position)
);

-- The organisation's totals per local hour (the overview and home page read only this), with
-- the suppression list's growth by reason.
CREATE TABLE report_org_hour (
    organisation_id  uuid NOT NULL,
    hour             timestamp NOT NULL,
    sent             bigint NOT NULL DEFAULT 0,
    delivered        bigint NOT NULL DEFAULT 0,
    bounced          bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    human_openers    bigint NOT NULL DEFAULT 0,
    machine_opens    bigint NOT NULL DEFAULT 0,
    machine_openers  bigint NOT NULL DEFAULT 0,
    human_clicks     bigint NOT NULL DEFAULT 0,
    human_clickers   bigint NOT NULL DEFAULT 0,
    machine_clicks   bigint NOT NULL DEFAULT 0,
    unsubscribes     bigint NOT NULL DEFAULT 0,
    bounced_hard    bigint NOT NULL DEFAULT 0,
    bounced_soft    bigint NOT NULL DEFAULT 0,
    bounced_policy  bigint NOT NULL DEFAULT 0,
    deferrals       bigint NOT NULL DEFAULT 0,
    suppressed_unsubscribed bigint NOT NULL DEFAULT 0,
    suppressed_hard_bounce  bigint NOT NULL DEFAULT 0,
    suppressed_complaint    bigint NOT NULL DEFAULT 0,
    suppressed_manual       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organisation_id, hour)
);

-- A bounce's class from its stored status ("550 5.1.1"): policy (x.7.x: the receiver's rules,
-- reputation, authentication), soft (4xx: temporary, retries ran out) or hard (the rest of 5xx:
-- no such mailbox or domain). Without a status: hard.
CREATE FUNCTION hermetic_bounce_class(status text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN status ~ '\m[45]\.7\.[0-9]' THEN 'policy'
                WHEN status ~ '^4' THEN 'soft'
                ELSE 'hard' END
$$;

-- Each time a delivery was deferred (a temporary refusal or connection trouble; retried later).
CREATE TABLE delivery_deferral (
    organisation_id uuid NOT NULL,
    delivery_id     uuid NOT NULL REFERENCES delivery (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL
);
CREATE INDEX delivery_deferral_organisation ON delivery_deferral (organisation_id, at);
CREATE INDEX delivery_deferral_delivery ON delivery_deferral (delivery_id);

-- Engagement: every inserted open, click and unsubscribe of a delivery.
CREATE FUNCTION report_capture_engagement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, at)
    SELECT n.organisation_id, 1, n.delivery_id, n.campaign_id, n.activity, n.machine, n.link_position, n.occurred_at
    FROM new_rows n
    WHERE n.delivery_id IS NOT NULL AND n.activity IN ('opened', 'clicked', 'unsubscribed');
    RETURN NULL;
END
$$;
CREATE TRIGGER engagement_report_capture AFTER INSERT ON engagement_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_engagement();

-- Deliveries: a final outcome counts at its time (accepted, else recorded, else last update).
CREATE FUNCTION report_capture_delivery_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at)
    SELECT n.organisation_id, 2, n.id, n.campaign_id, n.state,
        CASE WHEN n.state = 'bounced' THEN hermetic_bounce_class(n.smtp_status) END,
        coalesce(n.accepted_at, n.recorded_at, n.updated_at)
    FROM new_rows n WHERE n.state IN ('sent', 'bounced', 'failed');
    RETURN NULL;
END
$$;
CREATE TRIGGER delivery_report_capture_insert AFTER INSERT ON delivery
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_delivery_insert();

CREATE FUNCTION report_capture_delivery_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at, sign)
    SELECT x.organisation_id, 2, x.id, x.campaign_id, x.state, CASE WHEN x.state = 'bounced' THEN x.class END, x.at, x.sign
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (VALUES
        (o.organisation_id, o.id, o.campaign_id, o.state, hermetic_bounce_class(o.smtp_status),
         coalesce(o.accepted_at, o.recorded_at, o.updated_at), -1::smallint),
        (n.organisation_id, n.id, n.campaign_id, n.state, hermetic_bounce_class(n.smtp_status),
         coalesce(n.accepted_at, n.recorded_at, n.updated_at), 1::smallint)
    ) AS x (organisation_id, id, campaign_id, state, class, at, sign)
    WHERE x.state IN ('sent', 'bounced', 'failed')
      AND (o.state, hermetic_bounce_class(o.smtp_status), coalesce(o.accepted_at, o.recorded_at, o.updated_at))
          IS DISTINCT FROM (n.state, hermetic_bounce_class(n.smtp_status), coalesce(n.accepted_at, n.recorded_at, n.updated_at));
    -- A retry scheduled: the delivery's state only says "deferred" until the next attempt, so
    -- each deferral is kept (delivery_deferral) and counted.
    WITH d AS (
        INSERT INTO delivery_deferral (organisation_id, delivery_id, at)
        SELECT n.organisation_id, n.id, n.updated_at
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.state = 'deferred' AND (o.state <> 'deferred' OR n.attempts > o.attempts)
        RETURNING organisation_id, delivery_id, at)
    INSERT INTO report_pending (organisation_id, kind, delivery_id, activity, at)
    SELECT organisation_id, 4, delivery_id, 'deferred', at FROM d;
    RETURN NULL;
END
$$;
CREATE TRIGGER delivery_report_capture_update AFTER UPDATE ON delivery
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_delivery_update();

-- Suppressions: growth of the list by reason (an upgrade moves one entry between reasons).
CREATE FUNCTION report_capture_suppression_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, activity, at)
    SELECT n.organisation_id, 3, n.reason, n.created_at FROM new_rows n;
    RETURN NULL;
END
$$;
CREATE TRIGGER suppression_report_capture_insert AFTER INSERT ON suppression
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_suppression_insert();

CREATE FUNCTION report_capture_suppression_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, activity, at, sign)
    SELECT x.organisation_id, 3, x.reason, x.at, x.sign
    FROM new_rows n JOIN old_rows o ON o.organisation_id = n.organisation_id AND o.email_bidx = n.email_bidx
    CROSS JOIN LATERAL (VALUES (o.organisation_id, o.reason, o.created_at, -1::smallint),
                               (n.organisation_id, n.reason, n.created_at, 1::smallint)) AS x (organisation_id, reason, at, sign)
    WHERE (o.reason, o.created_at) IS DISTINCT FROM (n.reason, n.created_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER suppression_report_capture_update AFTER UPDATE ON suppression
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_suppression_update();

CREATE FUNCTION report_capture_suppression_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, activity, at, sign)
    SELECT o.organisation_id, 3, o.reason, o.created_at, -1 FROM old_rows o;
    RETURN NULL;
END
$$;
CREATE TRIGGER suppression_report_capture_delete AFTER DELETE ON suppression
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_suppression_delete();

-- What is already in the database is rolled up by the job like any new fact.
UPDATE organisation SET report_rebuild_requested_at = now();
