// SPDX-License-Identifier: Apache-2.0
//
// The live event stream: events and notifications as they arrive, filtered by type pattern, user and level,
// with pause/resume and a bounded buffer (the newest BUFFER_SIZE items; older ones are forgotten).

import { EventPattern } from '/client/realtime-client.js';
import { byId, clock, compactJSON, el } from './dom.js';

export const BUFFER_SIZE = 500;

const LEVELS = ['info', 'success', 'warning', 'error', 'critical'];
const RANK = { info: 0, success: 0, warning: 1, error: 2, critical: 3 };

/**
 * The console's severity of an event (events carry no level; notifications do): `critical` for
 * `security.high_risk.*` and `system.error.*`; `error` for `*.failure` and the other `security.*` types;
 * `warning` for `session.revoked`, `session.expired`, `session.concurrent_limit` and `system.performance.*`;
 * `info` otherwise.
 * @param {string} type
 * @returns {string}
 */
export function eventLevel(type) {
  const text = String(type);
  if (text.startsWith('security.high_risk.') || text.startsWith('system.error.')) return 'critical';
  if (text.endsWith('.failure') || text.startsWith('security.')) return 'error';
  if (['session.revoked', 'session.expired', 'session.concurrent_limit'].includes(text)) return 'warning';
  if (text.startsWith('system.performance.')) return 'warning';
  return 'info';
}

export class EventsView {
  constructor() {
    /** @type {{kind: string, type: string, level: string, userId: string | null, at: string, item: any}[]} */
    this.buffer = [];
    this.paused = false;
    this.unseen = 0;
    this.forgotten = 0;
    this.received = 0;
    /** @type {{pattern: EventPattern | null, user: string, level: string}} */
    this.filter = { pattern: null, user: '', level: '' };
    this.list = byId('event-list');
    this.counts = byId('event-counts');
    this.pauseButton = byId('pause');
    this.wire();
  }

  wire() {
    const type = byId('filter-type');
    const user = byId('filter-user');
    const level = byId('filter-level');
    const error = byId('filter-error');
    const apply = () => {
      error.textContent = '';
      type.removeAttribute('aria-invalid');
      let pattern = null;
      if (type.value.trim() !== '') {
        try {
          pattern = new EventPattern(type.value.trim());
        } catch (failure) {
          type.setAttribute('aria-invalid', 'true');
          error.textContent = failure.message;
        }
      }
      this.filter = { pattern, user: user.value.trim(), level: level.value };
      this.render();
    };
    type.addEventListener('input', apply);
    user.addEventListener('input', apply);
    level.addEventListener('change', apply);
    byId('event-filters').addEventListener('submit', (event) => event.preventDefault());
    this.pauseButton.addEventListener('click', () => this.setPaused(!this.paused));
    byId('clear-events').addEventListener('click', () => {
      this.buffer = [];
      this.unseen = 0;
      this.forgotten = 0;
      this.render();
    });
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.textContent = paused ? 'Resume' : 'Pause';
    this.pauseButton.setAttribute('aria-pressed', String(paused));
    if (!paused) {
      this.unseen = 0;
      this.render();
    } else {
      this.updateCounts();
    }
  }

  /** @param {import('/client/realtime-client.js').RealtimeEvent} event */
  addEvent(event) {
    this.add({ kind: 'event', type: String(event.type), level: eventLevel(event.type), userId: event.userId ?? null, at: event.timestamp, item: event });
  }

  /** @param {import('/client/realtime-client.js').RealtimeNotification} notification */
  addNotification(notification) {
    const level = LEVELS.includes(notification.level) ? notification.level : 'info';
    this.add({ kind: 'notification', type: `notification.${level}`, level, userId: null, at: notification.timestamp, item: notification });
  }

  add(entry) {
    this.received += 1;
    this.buffer.push(entry);
    if (this.buffer.length > BUFFER_SIZE) {
      this.buffer.shift();
      this.forgotten += 1;
    }
    if (this.paused) {
      this.unseen += 1;
      this.updateCounts();
      return;
    }
    if (this.matches(entry)) {
      this.list.prepend(this.row(entry));
      while (this.list.childElementCount > BUFFER_SIZE) this.list.lastElementChild.remove();
    }
    this.updateCounts();
  }

  matches(entry) {
    const { pattern, user, level } = this.filter;
    if (pattern && !pattern.matches(entry.type)) return false;
    if (user && entry.userId !== user) return false;
    if (level && RANK[entry.level] < RANK[level]) return false;
    return true;
  }

  render() {
    const rows = [];
    for (let index = this.buffer.length - 1; index >= 0; index -= 1) {
      if (this.matches(this.buffer[index])) rows.push(this.row(this.buffer[index]));
    }
    this.list.replaceChildren(...rows);
    this.updateCounts();
  }

  updateCounts() {
    const shown = this.list.childElementCount;
    let text = `${shown} shown, ${this.received} received`;
    if (this.paused) text += `, paused (${this.unseen} new)`;
    if (this.forgotten > 0) text += `, ${this.forgotten} older forgotten`;
    this.counts.textContent = text;
  }

  row(entry) {
    const item = entry.item;
    const head = el('div', { class: 'event-head' }, [
      el('time', { text: clock(entry.at), attrs: { datetime: String(entry.at ?? '') } }),
      el('span', { class: `level level-${entry.level}`, text: entry.level }),
      el('span', { class: 'event-type', text: entry.kind === 'event' ? entry.type : 'notification' }),
    ]);
    const details = [];
    if (entry.kind === 'event') {
      if (item.userId) details.push(el('span', { class: 'field', text: `user ${item.userId}` }));
      if (item.sessionId) details.push(el('span', { class: 'field', text: `session ${item.sessionId}` }));
      details.push(el('code', { class: 'data', text: compactJSON(item.data ?? {}) }));
    } else {
      details.push(el('strong', { class: 'title', text: item.title ?? '' }));
      details.push(el('span', { class: 'message', text: item.message ?? '' }));
      if (item.data && Object.keys(item.data).length > 0) {
        details.push(el('code', { class: 'data', text: compactJSON(item.data) }));
      }
    }
    return el('li', { class: `event kind-${entry.kind}`, attrs: { 'data-type': entry.type } }, [
      head,
      el('div', { class: 'event-body' }, details),
    ]);
  }
}
