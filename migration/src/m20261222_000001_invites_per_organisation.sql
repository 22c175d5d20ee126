-- Invitations are per organisation, so that inviting an address never reveals whether it has an
-- account elsewhere (issue 18, item 15).
--
-- An address still identifies one account across Hermetic (sign-in does not ask for an
-- organisation): at most one row per address that has accepted an invitation or was created with
-- a password (status active or disabled). Pending invitations ('invited') are per organisation:
-- several organisations may have one for the same address, and one that cannot be accepted
-- (because the address has an account) stays pending until it expires. Within an organisation an
-- address appears once.
DROP INDEX app_user_email;
CREATE UNIQUE INDEX app_user_email_account ON app_user (email) WHERE status <> 'invited';
CREATE UNIQUE INDEX app_user_email_org ON app_user (email, organisation_id);
