-- Report facts attributed when they are captured. A pending fact now carries its delivery's
-- source (campaign, sequence email and step, or API message), acceptance time, provider family
-- and audience part, copied by the capture triggers from the delivery row they already touch
-- (an outcome) or from one probe of its key (an event: the tracking request just read that
-- delivery). The rollup no longer looks every fact's delivery up again: with deliveries keyed by
-- random ids, those probes were the rollup's largest cost at ten million events (a random page
-- of a multi-gigabyte table per fact). A delivery not yet accepted when its event is captured
-- (an image fetched in the instant between the server's acceptance and our record of it) has no
-- acceptance time or family yet: the rollup looks those few up as before.

ALTER TABLE report_pending
    ADD COLUMN source_kind   smallint,
    ADD COLUMN source_id     uuid,
    ADD COLUMN step_id       text,
    ADD COLUMN sent_at       timestamptz,
    ADD COLUMN audience_kind smallint,
    ADD COLUMN audience_id   uuid;

-- A delivery's report source: 1 campaign (the campaign), 2 sequence email (the sequence and the
-- step), 3 API message. Inlined into the statements that use it.
CREATE FUNCTION report_source(source text, campaign_id uuid, delivery_id uuid)
RETURNS TABLE (source_kind smallint, source_id uuid, step_id text) LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coalesce(source, 'campaign') = 'campaign' THEN 1
                WHEN source = 'sequence_step' THEN 2 ELSE 3 END::smallint,
        CASE WHEN coalesce(source, 'campaign') = 'campaign' THEN campaign_id
             WHEN source = 'sequence_step' THEN
                (SELECT e.sequence_id FROM api_message m JOIN enrolment e ON e.id = m.enrolment_id WHERE m.id = delivery_id)
        END,
        CASE WHEN source = 'sequence_step' THEN
                coalesce((SELECT m.step_id FROM api_message m WHERE m.id = delivery_id), '')
             ELSE '' END
$$;

-- Facts queued before this migration.
UPDATE report_pending p SET source_kind = s.source_kind, source_id = s.source_id, step_id = s.step_id,
    sent_at = d.accepted_at, audience_kind = d.audience_kind, audience_id = d.audience_id,
    family = CASE WHEN p.kind = 1 THEN d.domain_family ELSE p.family END
FROM delivery d CROSS JOIN LATERAL report_source(d.source, d.campaign_id, d.id) s
WHERE d.id = p.delivery_id AND p.kind <> 3;
UPDATE report_pending SET source_kind = 1, source_id = campaign_id, step_id = ''
WHERE kind <> 3 AND source_kind IS NULL;
-- Every producer attributes what it queues.
ALTER TABLE report_pending ADD CONSTRAINT report_pending_attributed CHECK (kind = 3 OR source_kind IS NOT NULL);

CREATE OR REPLACE FUNCTION report_capture_engagement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, at, client,
        family, source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
    SELECT n.organisation_id, 1, n.delivery_id, n.campaign_id, n.activity, n.machine, n.link_position, n.occurred_at, n.client,
        d.domain_family, s.source_kind, s.source_id, s.step_id, d.accepted_at, d.audience_kind, d.audience_id
    FROM new_rows n
    LEFT JOIN delivery d ON d.id = n.delivery_id
    CROSS JOIN LATERAL report_source(d.source, coalesce(d.campaign_id, n.campaign_id), n.delivery_id) s
    WHERE n.delivery_id IS NOT NULL AND n.activity IN ('opened', 'clicked', 'unsubscribed');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_capture_engagement_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, at, client, sign,
        family, source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
    SELECT x.organisation_id, 1, x.delivery_id, x.campaign_id, x.activity, x.machine, x.link_position, x.at, x.client, x.sign,
        d.domain_family, s.source_kind, s.source_id, s.step_id, d.accepted_at, d.audience_kind, d.audience_id
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (VALUES
        (o.organisation_id, o.delivery_id, o.campaign_id, o.activity, o.machine, o.link_position, o.occurred_at, o.client, -1::smallint),
        (n.organisation_id, n.delivery_id, n.campaign_id, n.activity, n.machine, n.link_position, n.occurred_at, n.client, 1::smallint)
    ) AS x (organisation_id, delivery_id, campaign_id, activity, machine, link_position, at, client, sign)
    LEFT JOIN delivery d ON d.id = x.delivery_id
    CROSS JOIN LATERAL report_source(d.source, coalesce(d.campaign_id, x.campaign_id), x.delivery_id) s
    WHERE x.delivery_id IS NOT NULL AND x.activity IN ('opened', 'clicked', 'unsubscribed')
      AND (o.machine, o.activity, o.link_position, o.occurred_at, o.delivery_id, o.client)
          IS DISTINCT FROM (n.machine, n.activity, n.link_position, n.occurred_at, n.delivery_id, n.client);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_capture_delivery_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at, family, tls,
        source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
    SELECT n.organisation_id, 2, n.id, n.campaign_id, n.state,
        CASE WHEN n.state = 'bounced' THEN hermetic_bounce_class(n.smtp_status) END,
        coalesce(n.accepted_at, n.recorded_at, n.updated_at), n.domain_family, n.tls_version,
        s.source_kind, s.source_id, s.step_id, n.accepted_at, n.audience_kind, n.audience_id
    FROM new_rows n CROSS JOIN LATERAL report_source(n.source, n.campaign_id, n.id) s
    WHERE n.state IN ('sent', 'bounced', 'failed');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_capture_delivery_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at, sign, family, tls,
        source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
    SELECT x.organisation_id, 2, x.id, x.campaign_id, x.state, CASE WHEN x.state = 'bounced' THEN x.class END, x.at, x.sign,
        x.family, x.tls, s.source_kind, s.source_id, s.step_id, n.accepted_at, n.audience_kind, n.audience_id
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL report_source(n.source, n.campaign_id, n.id) s
    CROSS JOIN LATERAL (VALUES
        (o.organisation_id, o.id, o.campaign_id, o.state, hermetic_bounce_class(o.smtp_status),
         coalesce(o.accepted_at, o.recorded_at, o.updated_at), -1::smallint, o.domain_family, o.tls_version),
        (n.organisation_id, n.id, n.campaign_id, n.state, hermetic_bounce_class(n.smtp_status),
         coalesce(n.accepted_at, n.recorded_at, n.updated_at), 1::smallint, n.domain_family, n.tls_version)
    ) AS x (organisation_id, id, campaign_id, state, class, at, sign, family, tls)
    WHERE x.state IN ('sent', 'bounced', 'failed')
      AND (o.state, hermetic_bounce_class(o.smtp_status), coalesce(o.accepted_at, o.recorded_at, o.updated_at),
           o.domain_family, o.tls_version)
          IS DISTINCT FROM (n.state, hermetic_bounce_class(n.smtp_status), coalesce(n.accepted_at, n.recorded_at, n.updated_at),
           n.domain_family, n.tls_version);
    -- A retry scheduled: the delivery's state only says "deferred" until the next attempt, so
    -- each deferral is kept (delivery_deferral) and counted.
    WITH d AS (
        INSERT INTO delivery_deferral (organisation_id, delivery_id, at)
        SELECT n.organisation_id, n.id, n.updated_at
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.state = 'deferred' AND (o.state <> 'deferred' OR n.attempts > o.attempts)
        RETURNING organisation_id, delivery_id, at)
    INSERT INTO report_pending (organisation_id, kind, delivery_id, activity, at,
        source_kind, source_id, step_id, sent_at, audience_kind, audience_id)
    SELECT d.organisation_id, 4, d.delivery_id, 'deferred', d.at,
        s.source_kind, s.source_id, s.step_id, n.accepted_at, n.audience_kind, n.audience_id
    FROM d JOIN new_rows n ON n.id = d.delivery_id
    CROSS JOIN LATERAL report_source(n.source, n.campaign_id, n.id) s;
    RETURN NULL;
END
$$;
