-- Report breakdowns (issue 23): by mailbox provider, email client, TLS version and audience part.
--
-- What a breakdown needs is kept with the fact when it happens, as a small code, never an
-- address or a user agent:
-- - `delivery.domain_family`: the recipient domain's provider family (1 Gmail, 2 Microsoft,
--   3 Yahoo, 4 Apple, 5 other; `domain::breakdowns::MailboxFamily`), set by the send pipeline
--   with each attempt's outcome;
-- - `delivery.tls_version`: 13 or 12, the TLS version the accepting server negotiated;
-- - `engagement_event.client`: the opening client's family (`ClientFamily`), from the tracking
--   hit's user agent;
-- - `delivery.audience_kind` / `audience_id`: the segment (4) or list (5) of a campaign's audience
--   through which the recipient was found when the audience was resolved: the first that reached
--   them, segments first, in the order chosen (ids only; membership of a list is already a row of
--   list_member).
ALTER TABLE delivery ADD COLUMN domain_family smallint CHECK (domain_family BETWEEN 1 AND 5);
ALTER TABLE delivery ADD COLUMN tls_version smallint CHECK (tls_version IN (12, 13));
ALTER TABLE engagement_event ADD COLUMN client smallint CHECK (client BETWEEN 1 AND 7);

ALTER TABLE delivery ADD COLUMN audience_kind smallint CHECK (audience_kind IN (4, 5));
ALTER TABLE delivery ADD COLUMN audience_id uuid;
ALTER TABLE delivery ADD CONSTRAINT delivery_audience_both CHECK ((audience_kind IS NULL) = (audience_id IS NULL));

-- Pending facts carry the codes as they were when the fact happened.
ALTER TABLE report_pending ADD COLUMN family smallint;
ALTER TABLE report_pending ADD COLUMN tls smallint;
ALTER TABLE report_pending ADD COLUMN client smallint;
-- A queue: every row is deleted within seconds of its insert. Vacuum it by the number of dead
-- rows, not by a share of a table whose size swings from nothing to millions.
ALTER TABLE report_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 20000);
-- The client of a delivery's first human open (so a later, earlier-dated open moves it).
ALTER TABLE report_first ADD COLUMN client smallint;

-- Per organisation, local day, source, dimension and value: the figures a breakdown shows.
-- `code` is the provider, client or TLS code (0: not recorded); `part_id` the segment or list
-- (nil for the other dimensions).
CREATE TABLE report_split (
    organisation_id uuid NOT NULL,
    day             date NOT NULL,
    source_kind     smallint NOT NULL CHECK (source_kind IN (1, 2, 3)),
    source_id       uuid NOT NULL,
    step_id         text NOT NULL DEFAULT '',
    dim             smallint NOT NULL CHECK (dim BETWEEN 1 AND 5),
    code            smallint NOT NULL DEFAULT 0,
    part_id         uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    sent            bigint NOT NULL DEFAULT 0,
    delivered       bigint NOT NULL DEFAULT 0,
    bounced         bigint NOT NULL DEFAULT 0,
    human_opens     bigint NOT NULL DEFAULT 0,
    human_openers   bigint NOT NULL DEFAULT 0,
    human_clickers  bigint NOT NULL DEFAULT 0,
    unsubscribes    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organisation_id, day, source_kind, source_id, step_id, dim, code, part_id)
);
-- The organisation-wide breakdowns (deliverability) read every source of a range of days.
CREATE INDEX report_split_organisation_dim ON report_split (organisation_id, dim, day);

CREATE OR REPLACE FUNCTION report_capture_engagement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, at, client)
    SELECT n.organisation_id, 1, n.delivery_id, n.campaign_id, n.activity, n.machine, n.link_position, n.occurred_at, n.client
    FROM new_rows n
    WHERE n.delivery_id IS NOT NULL AND n.activity IN ('opened', 'clicked', 'unsubscribed');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_capture_delivery_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at, family, tls)
    SELECT n.organisation_id, 2, n.id, n.campaign_id, n.state,
        CASE WHEN n.state = 'bounced' THEN hermetic_bounce_class(n.smtp_status) END,
        coalesce(n.accepted_at, n.recorded_at, n.updated_at), n.domain_family, n.tls_version
    FROM new_rows n WHERE n.state IN ('sent', 'bounced', 'failed');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_capture_delivery_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, detail, at, sign, family, tls)
    SELECT x.organisation_id, 2, x.id, x.campaign_id, x.state, CASE WHEN x.state = 'bounced' THEN x.class END, x.at, x.sign,
        x.family, x.tls
    FROM new_rows n JOIN old_rows o ON o.id = n.id
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
    INSERT INTO report_pending (organisation_id, kind, delivery_id, activity, at)
    SELECT organisation_id, 4, delivery_id, 'deferred', at FROM d;
    RETURN NULL;
END
$$;

-- An engagement event reclassified after it was captured (tracking marks a message's earlier
-- clicks as a link scanner's once all its links were clicked within seconds): the old
-- classification is taken back (−1) and the new one counted (+1); the rollup looks up the
-- delivery's first event of a kind again when the one it counted was taken back.
CREATE FUNCTION report_capture_engagement_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_pending (organisation_id, kind, delivery_id, campaign_id, activity, machine, link_position, at, client, sign)
    SELECT x.organisation_id, 1, x.delivery_id, x.campaign_id, x.activity, x.machine, x.link_position, x.at, x.client, x.sign
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (VALUES
        (o.organisation_id, o.delivery_id, o.campaign_id, o.activity, o.machine, o.link_position, o.occurred_at, o.client, -1::smallint),
        (n.organisation_id, n.delivery_id, n.campaign_id, n.activity, n.machine, n.link_position, n.occurred_at, n.client, 1::smallint)
    ) AS x (organisation_id, delivery_id, campaign_id, activity, machine, link_position, at, client, sign)
    WHERE x.delivery_id IS NOT NULL AND x.activity IN ('opened', 'clicked', 'unsubscribed')
      AND (o.machine, o.activity, o.link_position, o.occurred_at, o.delivery_id, o.client)
          IS DISTINCT FROM (n.machine, n.activity, n.link_position, n.occurred_at, n.delivery_id, n.client);
    RETURN NULL;
END
$$;
CREATE TRIGGER engagement_report_capture_update AFTER UPDATE ON engagement_event
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_engagement_update();

-- Existing rollups gain their breakdowns by a rebuild.
UPDATE organisation SET report_rebuild_requested_at = now();
