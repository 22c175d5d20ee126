-- Segments: a saved condition tree (domain::segments, versioned JSON). Never SQL: the service
-- compiles the non-PHI parts into a parameterised prefilter and evaluates PHI parts after
-- decryption.
CREATE TABLE segment (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    definition      jsonb NOT NULL,
    created_by      uuid REFERENCES app_user (id),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (organisation_id, id)
);
CREATE UNIQUE INDEX segment_name ON segment (organisation_id, lower(name));

-- Segment evaluation pages through one organisation's contacts in id order.
CREATE INDEX contact_org_id ON contact (organisation_id, id);

-- Engagement: one row per received message, human or machine open, and click. Filled by the
-- sending and tracking features; campaign ids gain their foreign key with the campaign table.
CREATE TABLE engagement_event (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    campaign_id     uuid NOT NULL,
    activity        text NOT NULL CHECK (activity IN ('received', 'opened', 'clicked')),
    -- A privacy proxy (Apple Mail Privacy Protection) or a link scanner, not a person.
    machine         boolean NOT NULL DEFAULT false,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX engagement_contact ON engagement_event (contact_id, activity, occurred_at);
CREATE INDEX engagement_campaign ON engagement_event (campaign_id, activity);

-- Patient events (appointment booked, lab result ready) sent by hospital systems. The type is an
-- organisation-chosen code; the properties can be PHI and are sealed (AAD: organisation,
-- "patient_event", "properties", id).
CREATE TABLE patient_event (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    event_type      text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]{0,63}$'),
    properties      bytea,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL
);
CREATE INDEX patient_event_contact ON patient_event (contact_id, event_type, occurred_at);

-- Days from `today` to the next anniversary of `d` (0 = today); 29 February falls on 28 February in
-- common years. Mirrors domain::segments::days_to_anniversary (a property test keeps them equal).
CREATE FUNCTION hermetic_days_to_anniversary(d date, today date) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN this_year >= today THEN this_year - today ELSE next_year - today END
    FROM (SELECT
        make_date(y, m, LEAST(dd, extract(day FROM (make_date(y, m, 1) + interval '1 month - 1 day'))::int)) AS this_year,
        make_date(y + 1, m, LEAST(dd, extract(day FROM (make_date(y + 1, m, 1) + interval '1 month - 1 day'))::int)) AS next_year
        FROM (SELECT extract(year FROM today)::int AS y, extract(month FROM d)::int AS m, extract(day FROM d)::int AS dd) p
    ) a
$$;
