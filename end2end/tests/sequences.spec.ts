import { expect, test } from './fixtures';
import { createUser, signInAndEnrol } from './support';

// An administrator builds a sequence in the builder (an email, a branch on the trigger event's
// department, on "yes" a second email and a wait, on "no" an exit), is told about hostile input
// next to the field, publishes it, and an integration posts the event through the API: the
// contact is counted at the wait step, listed in the enrolments with the decision trail and on
// the contact's page, both emails are in the dev mailbox, and the contact can be removed. An
// analyst sees the sequence masked and read-only.
test('sequences: build with a branch, publish, an API event enrols a contact, trail, mailbox; analysts read only', async ({ page, browser, allowConsole }) => {
  allowConsole(/status of 422/); // the refused name and sender below
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  const tag = `Seq${Date.now()}`;

  // A template (the starter greets the contact by name: it contains PHI).
  await page.goto('/templates');
  await expect(page.locator('[data-test=create-template]')).toBeEnabled();
  await page.locator('#template-name').fill(`Reminder ${tag}`);
  await page.locator('#template-starter').selectOption('newsletter');
  await page.locator('[data-test=create-template]').click();
  await expect(page).toHaveURL(/\/templates\/[0-9a-f-]{36}$/);
  await expect(page.locator('[data-test=save-state]')).toHaveText('Saved · version 1');
  const templateLabel = `Reminder ${tag} (version 1) — contains PHI`;

  // An API key for the integration (unsigned requests, for brevity).
  await page.goto('/settings/api-keys');
  await expect(page.locator('[data-test=create-key]')).toBeEnabled();
  await page.getByLabel('Name', { exact: true }).fill(`Bridge ${tag}`);
  await page.locator('[data-test="scope-contacts:write"]').check();
  await page.locator('[data-test=key-signed]').uncheck();
  await page.locator('[data-test=create-key]').click();
  const secret = await page.locator('[data-test=new-secret] [data-test=secret]').inputValue();
  const auth = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };

  // The integration's first sample event. Publishing checks the event fields a sequence reads
  // against the names its type's events have carried (other tests' appointment.booked events in
  // this organisation carried other names).
  const sample = `${tag.toLowerCase()}-sample@e2e-sequences.example`;
  const made = await page.request.put('/api/v1/contacts', { headers: auth, data: JSON.stringify({ email: sample, fields: { first_name: 'Sample' } }) });
  expect(made.status()).toBe(201);
  const first_event = await page.request.post('/api/v1/events', {
    headers: auth,
    data: JSON.stringify({ contact: { email: sample }, type: 'appointment.booked', properties: { department: 'neurology' } }),
  });
  expect(first_event.status()).toBe(202);

  // The list: empty name refused next to the field, then the new sequence opens in the builder.
  await page.goto('/sequences');
  const create = page.locator('[data-test=create-sequence]');
  await expect(create).toBeEnabled();
  await create.click();
  await expect(page.locator('[data-test=field-error-name]')).toContainText('Name');
  await page.locator('[data-test=new-sequence-name]').fill(`Reminders ${tag}`);
  await create.click();
  await expect(page).toHaveURL(/\/sequences\/[0-9a-f-]{36}$/);
  const url = page.url();
  await expect(page.locator('[data-test=sequence-status]')).toHaveText('Draft');
  await expect(page.locator('[data-test=save-sequence]')).toBeEnabled();

  // The trigger: appointment.booked (the starter's), with the first email step.
  await expect(page.locator('[data-test=trigger-event]')).toHaveValue('appointment.booked');
  const first = page.locator('[data-test=step][data-step=send-1]');
  await expect(first.locator('[data-test=step-problem]')).toContainText('choose a template');
  await expect(page.locator('[data-test=publish-sequence]')).toBeDisabled();
  await first.locator('[data-test=select-step]').click();
  await page.locator('[data-test=step-template]').selectOption({ label: templateLabel });
  await expect(page.locator('[data-test=step-policy-tls_preferred]')).toBeDisabled();
  await expect(first.locator('[data-test=step-problem]')).toHaveCount(0);

  // A branch after it, on the event's department; "yes": another email, then a wait; "no": exit.
  await page.locator('[data-test=add-step][data-after=send-1]').click();
  await page.locator('[data-test=add-branch]').click();
  const branch = page.locator('[data-test=step][data-step=branch-1]');
  await expect(branch).toBeVisible();
  await expect(branch.locator('[data-test=step-problem]')).toContainText('event property');
  await page.locator('[data-test=step-settings] [data-test=property-key]').fill('department');
  await page.locator('[data-test=step-settings] [data-test=property-value]').fill('cardiology');
  await expect(branch.locator('[data-test=step-summary]')).toContainText('department is “cardiology”');
  await page.locator('[data-test=add-step][data-after=branch-1][data-slot="0"]').click();
  await page.locator('[data-test=add-send_email]').click();
  await page.locator('[data-test=step-template]').selectOption({ label: templateLabel });
  await page.locator('[data-test=step-purpose]').selectOption('transactional');
  await page.locator('[data-test=add-step][data-after=send-email-1]').click();
  await page.locator('[data-test=add-wait]').click();
  await expect(page.locator('[data-test=wait-duration]')).toHaveValue('1');
  await page.locator('[data-test=add-step][data-after=branch-1][data-slot="1"]').click();
  await page.locator('[data-test=add-exit]').click();
  // The two paths side by side.
  const paths = page.locator('[data-test=step][data-step=branch-1] + [data-test=paths] > [data-test=path]');
  await expect(paths).toHaveCount(2);
  await expect(paths.nth(0).locator('[data-test=step]')).toHaveCount(2);
  await expect(paths.nth(1).locator('[data-test=step][data-kind=exit]')).toHaveCount(1);
  const [yes, no] = [await paths.nth(0).boundingBox(), await paths.nth(1).boundingBox()];
  expect(no!.x).toBeGreaterThan(yes!.x + yes!.width - 1);
  await expect(page.locator('[data-test=validation]')).toHaveCount(0);

  // Hostile sender: refused next to its field, not echoed.
  const from = page.locator('[data-test=from-email]');
  await expect(from).toHaveValue(/@e2e-clinic\.example$/);
  const good = await from.inputValue();
  await from.fill('care at clinic <script>');
  await page.locator('[data-test=save-sequence]').click();
  await expect(page.locator('[data-test=field-error-from_email]')).toContainText('From address');
  await expect(page.locator('[data-test=field-error-from_email]')).not.toContainText('<script>');
  await from.fill(good);
  await page.locator('[data-test=save-sequence]').click();
  await expect(page.locator('[data-test=notice]')).toContainText('Draft saved');

  // A test run of the saved draft: the cardiology path with simulated times.
  await page.locator('[data-test=sim-key]').first().fill('department');
  await page.locator('[data-test=sim-value]').first().fill('cardiology');
  await page.locator('[data-test=run-test]').click();
  const trace = page.locator('[data-test=test-path] [data-test=test-step]');
  await expect(trace.first()).toHaveAttribute('data-step', 'send-1');
  await expect(page.locator('[data-test=test-path]')).toContainText('send-email-1');
  await expect(page.locator('[data-test=test-step][data-outcome=branch_then]')).toHaveCount(1);

  // Publish (the draft is saved first, then the confirmation).
  await page.locator('[data-test=publish-sequence]').click();
  await expect(page.locator('[data-test=publish-confirm]')).toBeVisible();
  await page.locator('[data-test=confirm-publish]').click();
  await expect(page.locator('[data-test=sequence-status]')).toHaveText('Live');
  await expect(page.locator('[data-test=sequence-version]')).toContainText('Version 1 live');

  // The integration: a contact, then the event.
  const email = `${tag.toLowerCase()}@e2e-sequences.example`;
  const upsert = await page.request.put('/api/v1/contacts', { headers: auth, data: JSON.stringify({ email, fields: { first_name: 'Sam' } }) });
  expect(upsert.status()).toBe(201);
  const contactId = (await upsert.json()).id;
  const ev = await page.request.post('/api/v1/events', {
    headers: auth,
    data: JSON.stringify({ contact: { email }, type: 'appointment.booked', properties: { department: 'cardiology' } }),
  });
  expect(ev.status()).toBe(202);

  // The contact waits at the wait step: its card counts them.
  await expect(async () => {
    await page.goto(url);
    await expect(page.locator('[data-test=step][data-step=wait-1] [data-test=stat-waiting]')).toHaveText('1', { timeout: 2000 });
  }).toPass({ timeout: 30_000 });
  // The names the event carried are offered wherever the builder asks for a property.
  await expect(page.locator('[data-test=trigger-properties] option[value=department]')).toHaveCount(1);

  // The enrolments tab: the contact, at the wait step, and why.
  await page.locator('[data-test=tab-enrolments]').click();
  const row = page.locator(`[data-test=enrolment][data-contact="${contactId}"]`);
  await expect(row).toHaveAttribute('data-state', 'active');
  await expect(row.locator('[data-test=enrolment-step]')).toHaveText('wait-1');
  await row.locator('[data-test=show-trail]').click();
  const trail = page.locator('[data-test=trail]');
  await expect(trail.locator('[data-test=trail-entry][data-outcome=entered]')).toHaveCount(1);
  await expect(trail.locator('[data-test=trail-entry][data-outcome=branch_then]')).toContainText('condition held');
  await expect(trail.locator('[data-test=trail-entry][data-outcome=sent]')).toHaveCount(2);
  await expect(trail).not.toContainText('cardiology');

  // Both emails reached the dev mailbox.
  await page.goto('/settings/mailbox');
  await expect(async () => {
    await page.reload();
    await expect(page.locator('[data-test=mail]', { hasText: email })).toHaveCount(2, { timeout: 2000 });
  }).toPass({ timeout: 30_000 });

  // The contact's page lists the enrolment; removing it (after a confirmation) ends it.
  await page.goto(`/contacts/${contactId}`);
  const mine = page.locator('[data-test=contact-sequences] [data-test=enrolment]');
  await expect(mine).toHaveCount(1);
  await expect(mine).toContainText(`Reminders ${tag}`);
  await mine.locator('[data-test=remove-enrolment]').click();
  await mine.locator('[data-test=confirm-remove-enrolment]').click();
  await expect(page.locator('[data-test=contact-sequences] [data-test=enrolment]')).toHaveAttribute('data-state', 'exited');
  // Enrolled again by hand (the entry rule admits one enrolment at a time).
  await page.locator('[data-test=enrol-sequence]').selectOption({ label: `Reminders ${tag}` });
  await page.locator('[data-test=enrol]').click();
  await expect(page.locator('[data-test=contact-sequences] [data-test=enrolment]')).toHaveCount(2);

  // The list shows the live sequence with its figures.
  await page.goto('/sequences');
  const listed = page.locator('[data-test=sequence-row]', { hasText: `Reminders ${tag}` });
  await expect(listed.locator('[data-test=sequence-status]')).toHaveText('Live');
  await expect(listed.locator('[data-test=entered]')).toHaveText('2');

  // The report tab: the funnel in flow order, the time-to-convert chart with its table, and the
  // first email step's campaign figures.
  await page.goto(url);
  await expect(page.locator('[data-test=sign-out]')).toBeEnabled(); // hydrated: the tabs answer
  await page.locator('[data-test=tab-report]').click();
  const report = page.locator('[data-test=sequence-report]');
  await expect(report.locator('[data-test=report-entered]')).toHaveText('2');
  await expect(report.locator('[data-test=funnel-step]').first()).toHaveAttribute('data-step', 'send-1');
  await expect(report.locator('[data-test=funnel-step][data-step=send-1] [data-test=reached]')).toHaveText(/^[12]$/);
  await expect(report.locator('[data-test=convert-chart] rect')).toHaveCount(7);
  await expect(report.locator('[data-test=to-convert] tbody tr')).toHaveCount(7);
  await expect(report.locator('[data-test=email-step][data-step=send-1] [data-test=delivered]')).toHaveText(/^[12]$/);

  // Pause holds it, resume continues; archiving asks first and leaves it read-only.
  await page.goto(url);
  await page.locator('[data-test=pause-sequence]').click();
  await expect(page.locator('[data-test=sequence-status]')).toHaveText('Paused');
  await page.locator('[data-test=resume-sequence]').click();
  await expect(page.locator('[data-test=sequence-status]')).toHaveText('Live');
  await page.locator('[data-test=archive-sequence]').click();
  await expect(page.locator('[data-test=archive-confirm]')).toContainText('Nobody new enters it');
  await page.locator('[data-test=confirm-archive]').click();
  await expect(page.locator('[data-test=sequence-status]')).toHaveText('Archived');
  await expect(page.locator('[data-test=save-sequence]')).toHaveCount(0);
  await expect(page.locator('[data-test=sequence-name]')).toBeDisabled();

  // An analyst: the masked view, read-only, without enrolments.
  const analyst = createUser('analyst');
  const ctx = await browser.newContext();
  const a = await ctx.newPage();
  await signInAndEnrol(a, analyst);
  await a.goto('/sequences');
  await expect(a.locator('[data-test=sequence-row]', { hasText: `Reminders ${tag}` })).toBeVisible();
  await expect(a.locator('[data-test=new-sequence]')).toHaveCount(0);
  await a.goto(url);
  await expect(a.locator('[data-test=masked-note]')).toBeVisible();
  await expect(a.locator('[data-test=sign-out]')).toBeEnabled(); // hydrated
  await expect(a.locator('[data-test=save-sequence]')).toHaveCount(0);
  await expect(a.locator('[data-test=publish-sequence]')).toHaveCount(0);
  await expect(a.locator('[data-test=add-step]')).toHaveCount(0);
  await expect(a.locator('[data-test=tab-enrolments]')).toHaveCount(0);
  // The report, with every figure from fewer than 11 people hidden.
  await a.locator('[data-test=tab-report]').click();
  await expect(a.locator('[data-test=report-entered]')).toHaveText('<11');
  await expect(a.locator('[data-test=sequence-report] [data-test=small-cells]').first()).toBeVisible();
  await a.locator('[data-test=tab-flow]').click();
  await expect(a.locator('[data-test=test-run]')).toHaveCount(0);
  await expect(a.locator('[data-test=trigger-event]')).toBeDisabled();
  await a.locator('[data-test=step][data-step=branch-1] [data-test=select-step]').click();
  await expect(a.locator('[data-test=step][data-step=branch-1] [data-test=step-summary]')).not.toContainText('cardiology');
  await expect(a.locator('[data-test=step-settings] [data-test=property-value]')).toHaveCount(0);
  await ctx.close();
});
