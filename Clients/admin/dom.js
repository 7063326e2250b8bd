// SPDX-License-Identifier: Apache-2.0
//
// DOM helpers of the admin console. Every value from the server or the user is set with textContent or
// setAttribute, never parsed as HTML: an event whose data holds markup shows it as text.

/**
 * Creates an element.
 * @param {string} tag
 * @param {{class?: string, text?: string, attrs?: Object<string, string>}} [options]
 * @param {Node[]} [children]
 * @returns {HTMLElement}
 */
export function el(tag, options = {}, children = []) {
  const element = document.createElement(tag);
  if (options.class) element.className = options.class;
  if (options.text !== undefined) element.textContent = String(options.text);
  for (const [name, value] of Object.entries(options.attrs ?? {})) element.setAttribute(name, String(value));
  for (const child of children) element.append(child);
  return element;
}

/** @param {string} id @returns {any} */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

const MAX_TOASTS = 5;

/**
 * Shows a short message in the status area (kind: `ok` or `error`); it disappears after a while.
 * @param {string} text
 * @param {'ok' | 'error'} [kind]
 */
export function toast(text, kind = 'ok') {
  const area = byId('toasts');
  const item = el('p', { class: `toast ${kind}`, text });
  area.append(item);
  while (area.childElementCount > MAX_TOASTS) area.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? 10000 : 6000);
}

/** How long a first click keeps a button armed. */
const ARMED_MS = 5000;

/** @type {Map<string, number>} key → when its arming ends (ms since the epoch). Bounded: one entry per armed button. */
const armedUntil = new Map();

/**
 * A button that asks for a second click before acting (no browser dialog): the first click turns it into
 * "Confirm …" for a few seconds, the second runs `action`, and its outcome is shown with `toast`.
 *
 * The armed state belongs to `key` (what the button acts on, e.g. `revoke-session:<id>`), not to the element: a
 * live refresh that rebuilds the list while the button is armed gives the new button the same state, so the
 * administrator's second click confirms instead of landing on a fresh, unarmed button.
 * @param {string} label
 * @param {string} confirmLabel
 * @param {() => Promise<string>} action resolves with the success message.
 * @param {string} key identifies the action and its target.
 * @returns {HTMLButtonElement}
 */
export function confirmButton(label, confirmLabel, action, key) {
  const button = /** @type {HTMLButtonElement} */ (el('button', { class: 'small danger', text: label, attrs: { type: 'button' } }));
  let timer = null;
  /** Ends the arming `until` (a newer button for the same key may have re-armed it: that arming stays). */
  const disarm = (until) => {
    clearTimeout(timer);
    if (armedUntil.get(key) === until) armedUntil.delete(key);
    button.classList.remove('confirming');
    button.textContent = label;
  };
  const arm = (until) => {
    armedUntil.set(key, until);
    button.classList.add('confirming');
    button.textContent = confirmLabel;
    timer = setTimeout(() => disarm(until), Math.max(0, until - Date.now()));
  };
  const until = armedUntil.get(key);
  if (until !== undefined && until > Date.now()) arm(until);
  button.addEventListener('click', async () => {
    if (!button.classList.contains('confirming')) {
      arm(Date.now() + ARMED_MS);
      return;
    }
    disarm(armedUntil.get(key));
    button.disabled = true;
    try {
      toast(await action(), 'ok');
    } catch (error) {
      toast(error.message, 'error');
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/**
 * A compact, bounded text form of a JSON value.
 * @param {any} value
 * @param {number} [limit]
 * @returns {string}
 */
export function compactJSON(value, limit = 600) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) return '';
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/**
 * A time as HH:MM:SS in the browser's zone.
 * @param {string | number | Date} value
 * @returns {string}
 */
export function clock(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleTimeString([], { hour12: false });
}
