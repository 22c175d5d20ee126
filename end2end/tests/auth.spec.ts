import { expect, test } from './fixtures';
import {
  createUser, EnrolPage, LoginPage, MfaPage, nextCode, PASSWORD, signInAndEnrol, signInWithMfa, signOut, totp,
} from './support';

test('a wrong password is refused with a plain message and no session', async ({ page, context, allowConsole }) => {
  // Deliberate: the wrong password is answered 401.
  allowConsole(/status of 401/);
  const email = createUser('marketer');
  const login = new LoginPage(page);
  await login.goto();
  await login.signIn(email, 'this is not the password');
  await expect(login.error()).toHaveText('The email or password is incorrect.');
  await expect(page).toHaveURL(/\/login$/);
  const cookies = await context.cookies();
  expect(cookies.find((c) => c.name === '__Host-hermetic_session')).toBeUndefined();
  // The same answer for an account that does not exist.
  await login.signIn('nobody@e2e.hermetic.test', 'this is not the password');
  await expect(login.error()).toHaveText('The email or password is incorrect.');
  // The app itself stays closed.
  await page.goto('/settings');
  await expect(page).toHaveURL(/\/login\?next=(%2F|\/)settings$/);
});

test('first sign-in enrols an authenticator, then sign-in asks for the code', async ({ page, allowConsole }) => {
  // Deliberate: a wrong code is answered 401.
  allowConsole(/status of 401/);
  const email = createUser('marketer');
  const login = new LoginPage(page);
  await login.goto();
  await login.signIn(email);
  const enrol = new EnrolPage(page);
  const secret = await enrol.secret();
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  // A wrong code is refused and enrolment can continue.
  await enrol.confirm('000000');
  await expect(page.getByRole('alert')).toContainText('not valid');
  await enrol.confirm(totp(secret));
  const codes = await enrol.finish();
  expect(new Set(codes).size).toBe(10);
  await expect(page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Campaigns' })).toBeVisible();
  await signOut(page);

  await signInWithMfa(page, email, secret);
  await expect(page.locator('[data-test=user-name]')).toContainText('Marketer');
});

test('a TOTP code cannot be used twice', async ({ page, allowConsole }) => {
  // Deliberate: the reused code is answered 401.
  allowConsole(/status of 401/);
  const email = createUser('analyst');
  const secret = await signInAndEnrol(page, email);
  await signOut(page);
  const code = nextCode(secret);
  const login = new LoginPage(page);
  await login.goto();
  await login.signIn(email);
  await new MfaPage(page).enter(code);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Welcome');
  await signOut(page);
  // Same code again, within its 30 seconds.
  await login.goto();
  await login.signIn(email);
  await new MfaPage(page).enter(code);
  await expect(page.getByRole('alert')).toHaveText('That code has already been used. Wait for the next code.');
  await expect(page).toHaveURL(/\/login\/mfa/);
});

test('an idle session is warned, then signed out', async ({ page }) => {
  const email = createUser('marketer');
  await signInAndEnrol(page, email);
  // The e2e server runs with a 30 s idle timeout and a 10 s warning.
  const dialog = page.getByRole('alertdialog', { name: 'Are you still there?' });
  await expect(dialog).toBeVisible({ timeout: 30_000 });
  await expect(page.getByRole('button', { name: 'Stay signed in' })).toBeFocused();
  await expect(page).toHaveURL(/\/login\?reason=idle/, { timeout: 20_000 });
  await expect(page.locator('[data-test=notice]')).toHaveText('You were signed out after a period of inactivity.');
  // The session is gone server-side too.
  await page.goto('/');
  await expect(page).toHaveURL(/\/login/);
});

test('"Stay signed in" keeps the session alive', async ({ page }) => {
  const email = createUser('marketer');
  await signInAndEnrol(page, email);
  const dialog = page.getByRole('alertdialog', { name: 'Are you still there?' });
  await expect(dialog).toBeVisible({ timeout: 30_000 });
  await page.getByRole('button', { name: 'Stay signed in' }).click();
  await expect(dialog).toBeHidden();
  await page.waitForTimeout(12_000); // past the original deadline
  await page.goto('/settings');
  await expect(page.getByRole('heading', { name: 'Settings' })).toBeVisible();
});

test('changing the password signs out the other sessions', async ({ browser, allowConsole }) => {
  // Deliberate: the old password and the signed-out session are answered 401.
  allowConsole(/status of 401/);
  const email = createUser('marketer');
  const first = await browser.newContext();
  const a = await first.newPage();
  const secret = await signInAndEnrol(a, email);
  const second = await browser.newContext();
  const b = await second.newPage();
  await signInWithMfa(b, email, secret);

  await a.goto('/settings');
  // Hydrated first: text typed before hydration is lost (bind:value resets the fields).
  await expect(a.getByRole('button', { name: 'Change password' })).toBeEnabled();
  await a.getByLabel('Current password').fill(PASSWORD);
  await a.getByLabel('New password', { exact: true }).fill('a completely new passphrase');
  await a.getByLabel('Repeat new password').fill('a completely new passphrase');
  await a.getByRole('button', { name: 'Change password' }).click();
  await expect(a.locator('[data-test=password-changed]')).toBeVisible();
  // This session continues (and can act again with its new CSRF token)...
  await a.getByRole('link', { name: 'Home' }).click();
  await a.reload();
  await expect(a.getByRole('heading', { level: 1 })).toContainText('Welcome');
  // ...the other one has ended.
  await b.reload();
  await expect(b).toHaveURL(/\/login/);
  // The old password no longer works; the new one does.
  const login = new LoginPage(b);
  await login.goto();
  await login.signIn(email, PASSWORD);
  await expect(login.error()).toHaveText('The email or password is incorrect.');
  await login.signIn(email, 'a completely new passphrase');
  await expect(b).toHaveURL(/\/login\/mfa/);
  await first.close();
  await second.close();
});

test('the sign-in form works with the keyboard alone', async ({ page }) => {
  const email = createUser('analyst');
  const login = new LoginPage(page);
  await login.goto();
  await expect(page.getByLabel('Email')).toBeFocused();
  await page.keyboard.type(email);
  await page.keyboard.press('Tab');
  await expect(page.getByLabel('Password')).toBeFocused();
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await expect(page).toHaveURL(/\/login\/enrol/);
});
