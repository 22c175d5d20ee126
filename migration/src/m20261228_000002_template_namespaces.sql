-- The message-bound merge namespaces a template version uses: `{{message.<key>}}` (the data an
-- integration sends with an API message) and `{{event.<key>}}` (the properties of the patient
-- event that started a sequence). Which kinds of message may use them is decided without
-- compiling the version again: a campaign may use neither, an API message no `event.*`, and a
-- sequence's publish check compares `event_keys` with the properties its trigger has carried.
-- The keys are names from the template's own text, never values; versions stored before the
-- sandbox knew these namespaces could not use them, hence the empty default.
ALTER TABLE template_version
    ADD COLUMN message_keys text[] NOT NULL DEFAULT '{}',
    ADD COLUMN event_keys   text[] NOT NULL DEFAULT '{}';
