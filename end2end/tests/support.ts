// Test support: users created through the real operator CLI, RFC 6238 codes, and page objects.
import { execFileSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { expect, type Page } from '@playwright/test';

export const PASSWORD = 'correct horse battery staple';
const SERVER_BIN = process.env.E2E_SERVER_BIN ?? '../target/debug/server';

/** Create an organisation with the operator CLI (a new organisation starts with nothing). */
export function createOrg(name: string) {
  execFileSync(SERVER_BIN, ['admin', 'create-org', '--name', name], {
    env: { ...process.env, HERMETIC_LOG: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Create a user with the operator CLI (same database as the server under test). */
export function createUser(role: 'admin' | 'marketer' | 'analyst', prefix = role, org = 'E2E Clinic'): string {
  const email = `${prefix}-${randomUUID().slice(0, 8)}@e2e.hermetic.test`;
  execFileSync(SERVER_BIN, ['admin', 'create-user', '--email', email, '--name', `E2E ${role}`, '--role', role, '--org', org], {
    env: { ...process.env, HERMETIC_NEW_USER_PASSWORD: PASSWORD, HERMETIC_LOG: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return email;
}

function base32Decode(s: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const out: number[] = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error('bad base32');
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 0xff); bits -= 8; }
  }
  return Buffer.from(out);
}

/** The TOTP code for a base32 secret at `at` (ms since epoch). */
export function totp(secretBase32: string, at = Date.now()): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const h = createHmac('sha1', base32Decode(secretBase32)).update(counter).digest();
  const o = h[h.length - 1] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

/**
 * The code of the next 30-second step. The server accepts one step of clock drift either way and
 * only steps newer than the last one used, so this is a fresh code without waiting.
 */
export function nextCode(secretBase32: string): string {
  return totp(secretBase32, Date.now() + 30_000);
}

export class LoginPage {
  constructor(private page: Page) {}
  async goto(query = '') {
    await this.page.goto(`/login${query}`);
    await expect(this.page.getByRole('button', { name: 'Sign in' })).toBeEnabled(); // hydrated
  }
  async signIn(email: string, password = PASSWORD) {
    await this.page.getByLabel('Email').fill(email);
    await this.page.getByLabel('Password').fill(password);
    await this.page.getByRole('button', { name: 'Sign in' }).click();
  }
  error() {
    return this.page.getByRole('alert');
  }
}

export class EnrolPage {
  constructor(private page: Page) {}
  async secret(): Promise<string> {
    await expect(this.page).toHaveURL(/\/login\/enrol/);
    await expect(this.page.getByRole('img', { name: /QR code/ })).toBeVisible();
    return (await this.page.locator('[data-test=totp-secret]').innerText()).trim();
  }
  async confirm(code: string) {
    await expect(this.page.getByRole('button', { name: 'Turn on two-step verification' })).toBeEnabled();
    await this.page.getByLabel('Code shown in the app').fill(code);
    await this.page.getByRole('button', { name: 'Turn on two-step verification' }).click();
  }
  async finish(): Promise<string[]> {
    const list = this.page.locator('[data-test=recovery-codes] code');
    await expect(list).toHaveCount(10);
    const codes = await list.allInnerTexts();
    await this.page.getByRole('button', { name: /I have saved my codes/ }).click();
    await expect(this.page).toHaveURL(/\/$/);
    return codes;
  }
}

export class MfaPage {
  constructor(private page: Page) {}
  async enter(code: string) {
    await expect(this.page).toHaveURL(/\/login\/mfa/);
    await expect(this.page.getByRole('button', { name: 'Verify' })).toBeEnabled();
    await this.page.getByLabel('Authentication code').fill(code);
    await this.page.getByRole('button', { name: 'Verify' }).click();
  }
}

/** First sign-in of a new user: password, enrolment, recovery codes. Returns the TOTP secret. */
export async function signInAndEnrol(page: Page, email: string): Promise<string> {
  const login = new LoginPage(page);
  await login.goto();
  await login.signIn(email);
  const enrol = new EnrolPage(page);
  const secret = await enrol.secret();
  await enrol.confirm(totp(secret));
  await enrol.finish();
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Welcome');
  return secret;
}

/** A later sign-in of an enrolled user, with the next step's code. */
export async function signInWithMfa(page: Page, email: string, secret: string, password = PASSWORD) {
  const login = new LoginPage(page);
  await login.goto();
  await login.signIn(email, password);
  await new MfaPage(page).enter(nextCode(secret));
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Welcome');
}

export async function signOut(page: Page) {
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page).toHaveURL(/\/login\?reason=signed_out/);
}
