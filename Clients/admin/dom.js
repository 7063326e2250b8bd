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

/**
 * A button that asks for a second click before acting (no browser dialog): the first click turns it into
 * "Confirm …" for a few seconds, the second runs `action`, and its outcome is shown with `toast`.
 * @param {string} label
 * @param {string} confirmLabel
 * @param {() => Promise<string>} action resolves with the success message.
 * @returns {HTMLButtonElement}
 */
export function confirmButton(label, confirmLabel, action) {
  const button = /** @type {HTMLButtonElement} */ (el('button', { class: 'small danger', text: label, attrs: { type: 'button' } }));
  let timer = null;
  button.addEventListener('click', async () => {
    if (!button.classList.contains('confirming')) {
      button.classList.add('confirming');
      button.textContent = confirmLabel;
      timer = setTimeout(() => {
        button.classList.remove('confirming');
        button.textContent = label;
      }, 5000);
      return;
    }
    clearTimeout(timer);
    button.classList.remove('confirming');
    button.textContent = label;
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
