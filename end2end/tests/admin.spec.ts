import { expect, test } from './fixtures';
import { createUser, EnrolPage, LoginPage, signInAndEnrol, totp } from './support';

test('an admin invites a marketer, who joins and enrols MFA', async ({ page, browser, allowConsole }) => {
  // Deliberate: a common password is refused (422); a marketer opens the audit page (403).
  allowConsole(/status of 422/);
  allowConsole(/\/audit: .*status of 403/);
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  await page.getByRole('link', { name: 'Settings' }).click();
  await page.getByRole('link', { name: 'Manage users' }).click();
  await expect(page.getByRole('heading', { name: 'Users' })).toBeVisible();
  const invitee = `invitee-${Date.now()}@e2e.hermetic.test`;
  await page.getByLabel('Email').fill(invitee);
  await page.getByLabel('Name').fill('Invited Marketer');
  await page.getByLabel('Role', { exact: true }).selectOption('marketer');
  await page.getByRole('button', { name: 'Send invitation' }).click();
  // The admin never sees the link: it is emailed to the address (the dev mailbox here).
  await expect(page.locator('[data-test=invite-created]')).toContainText(invitee);
  await expect(page.locator(`[data-test=user-row][data-email="${invitee}"]`)).toContainText('Invited');
  await page.goto('/settings/mailbox');
  const mail = page.locator('[data-test=mail]', { hasText: invitee }).first();
  await mail.locator('summary').click();
  const raw = await mail.locator('[data-test=mail-raw]').innerText();
  const link = raw.replace(/=\r?\n/g, '').match(/https?:\/\/[^\s"<]+\/invite#[A-Za-z0-9_-]{43}/)?.[0];
  expect(link, 'invitation link in the email').toBeTruthy();
  await page.goto('/settings/users');

  const ctx = await browser.newContext();
  const guest = await ctx.newPage();
  await guest.goto(link!);
  await expect(guest.getByText(`as ${invitee}`, { exact: false })).toBeVisible();
  await expect(guest).toHaveURL(/\/invite$/); // the token left the address bar
  await guest.getByLabel('Choose a password').fill('password1234');
  await guest.getByLabel('Repeat the password').fill('password1234');
  await guest.getByRole('button', { name: 'Set password' }).click();
  await expect(guest.getByRole('alert')).toContainText('commonly used');
  await guest.getByLabel('Choose a password').fill('marketing is a team sport');
  await guest.getByLabel('Repeat the password').fill('marketing is a team sport');
  await guest.getByRole('button', { name: 'Set password' }).click();
  await guest.getByRole('link', { name: 'Sign in' }).click();
  const login = new LoginPage(guest);
  await expect(guest.getByRole('button', { name: 'Sign in' })).toBeEnabled();
  await login.signIn(invitee, 'marketing is a team sport');
  const enrol = new EnrolPage(guest);
  await enrol.confirm(totp(await enrol.secret()));
  await enrol.finish();
  const nav = guest.getByRole('navigation', { name: 'Main' });
  await expect(nav.getByRole('link', { name: 'Campaigns' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Audit' })).toHaveCount(0);
  await guest.goto('/audit');
  await expect(guest.getByRole('heading', { name: 'Not available' })).toBeVisible();
  await ctx.close();

  // The admin sees the joined user, changes the role, and finds it all in the audit trail.
  await page.reload();
  const row = page.locator(`[data-test=user-row][data-email="${invitee}"]`);
  await expect(row).toContainText('Active');
  await expect(row.getByRole('combobox')).toBeEnabled();
  const changed = page.waitForResponse((r) => r.url().includes('/api/change_role') && r.ok());
  await row.getByRole('combobox').selectOption('analyst');
  await changed;
  await page.goto('/audit');
  await expect(page.locator('[data-test=audit-row][data-action="user.invited"]').first()).toBeVisible();
  await expect(page.locator('[data-test=audit-row][data-action="user.invite_accepted"]').first()).toBeVisible();
  await expect(page.locator('[data-test=audit-row][data-action="user.role_changed"]').first()).toBeVisible();
  await page.getByRole('button', { name: 'Verify chain now' }).click();
  await expect(page.locator('[data-test=chain-ok]')).toBeVisible();
});

test('script in user-supplied names never runs in the admin UI', async ({ page }) => {
  const admin = createUser('admin');
  await signInAndEnrol(page, admin);
  let dialogs = 0;
  page.on('dialog', async (d) => { dialogs++; await d.dismiss(); });
  await page.goto('/settings/users');
  await page.getByLabel('Email').fill(`xss-${Date.now()}@e2e.hermetic.test`);
  await page.getByLabel('Name').fill('<img src=x onerror=alert(1)><script>alert(2)</script>');
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await expect(page.locator('[data-test=invite-created]')).toBeVisible();
  await page.reload();
  await expect(page.getByText('<img src=x onerror=alert(1)>', { exact: false }).first()).toBeVisible();
  expect(dialogs).toBe(0);
});
