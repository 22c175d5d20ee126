-- Email templates and their versions. Every save that passes the checks is a new, immutable
-- version; campaigns pin a version id. Template content is authored copy with merge tags, not
-- contact data, so it is stored plain (contact values only exist at render time, inside Phi).

CREATE TABLE template (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    latest_version  integer NOT NULL DEFAULT 0,
    -- The editor's working copy when it does not pass the checks yet (autosave never loses
    -- work): the JSON of the editor state and the plain-words reason it was not saved as a version.
    draft           jsonb,
    draft_error     text,
    draft_saved_at  timestamptz,
    created_by      uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    archived_at     timestamptz,
    UNIQUE (organisation_id, id)
);
CREATE UNIQUE INDEX template_name ON template (organisation_id, lower(name)) WHERE archived_at IS NULL;

CREATE TABLE template_version (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL,
    template_id     uuid NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    mode            text NOT NULL CHECK (mode IN ('blocks', 'html')),
    subject         text NOT NULL,
    preheader       text NOT NULL,
    -- The block document (blocks mode); the HTML is generated from it on the server.
    design          jsonb,
    html            text NOT NULL,
    text_body       text NOT NULL,
    -- false: the plain text is generated from the HTML on every save; true: the author edited it.
    text_edited     boolean NOT NULL,
    uses_phi        boolean NOT NULL,
    fields_used     text[] NOT NULL,
    created_by      uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (template_id, version),
    UNIQUE (organisation_id, id),
    FOREIGN KEY (organisation_id, template_id) REFERENCES template (organisation_id, id) ON DELETE CASCADE
);
