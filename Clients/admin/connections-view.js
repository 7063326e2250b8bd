// SPDX-License-Identifier: Apache-2.0
//
// Connections grouped by user, from GET /api/v1/connections (cluster-wide, a page at a time) or one user's, with
// buttons to revoke a session, revoke every token of a user, disconnect a user and notify a user.

import { byId, clock, confirmButton, el, toast } from './dom.js';

/** The most connections the page holds: past this, "Load more" gives way to a hint to filter by user. */
export const MAX_RECORDS = 2000;

export class ConnectionsView {
  /**
   * @param {import('./api.js').API} api
   * @param {(userId: string) => void} notifyUser prepares the notification form for a user.
   */
  constructor(api, notifyUser) {
    this.api = api;
    this.notifyUser = notifyUser;
    /** @type {Map<string, any>} connection id → record (a listing may repeat a record; shown once) */
    this.records = new Map();
    this.cursor = null;
    this.user = '';
    this.groups = byId('connection-groups');
    this.counts = byId('connection-counts');
    this.more = byId('load-more');
    byId('connection-filter').addEventListener('submit', (event) => {
      event.preventDefault();
      this.load(byId('connection-user').value.trim());
    });
    this.more.addEventListener('click', () => this.next());
  }

  /** Loads the first page (of every user, or of `user`). */
  async load(user = this.user) {
    this.user = user;
    this.records.clear();
    this.cursor = null;
    await this.next();
  }

  async next() {
    this.more.disabled = true;
    try {
      const page = await this.api.connections({ userId: this.user || undefined, cursor: this.cursor });
      for (const record of page.connections) this.records.set(record.connectionId, record);
      this.cursor = page.nextCursor;
      this.render();
    } catch (error) {
      toast(`Connections: ${error.message}`, 'error');
    } finally {
      this.more.disabled = false;
    }
  }

  render() {
    /** @type {Map<string, any[]>} */
    const byUser = new Map();
    for (const record of this.records.values()) {
      if (!byUser.has(record.userId)) byUser.set(record.userId, []);
      byUser.get(record.userId).push(record);
    }
    const users = [...byUser.keys()].sort();
    this.groups.replaceChildren(...users.map((user) => this.group(user, byUser.get(user))));
    if (users.length === 0) {
      this.groups.append(el('p', { class: 'muted', text: this.user ? `${this.user} has no live connection.` : 'No live connection.' }));
    }
    const full = this.records.size >= MAX_RECORDS;
    this.more.hidden = !this.cursor || full;
    if (this.cursor && full) {
      this.groups.append(el('p', { class: 'muted', text: `Showing the first ${MAX_RECORDS} connections: filter by user to see others.` }));
    }
    this.counts.textContent = `${this.records.size} connection${this.records.size === 1 ? '' : 's'} of ${users.length} user${users.length === 1 ? '' : 's'}${this.cursor ? ' so far' : ''}`;
  }

  group(user, records) {
    records.sort((a, b) => String(a.connectedAt).localeCompare(String(b.connectedAt)));
    const sessions = new Set(records.map((record) => record.sessionId).filter(Boolean));
    const origins = new Set(records.map((record) => record.origin ?? 'no origin'));
    const servers = new Set(records.map((record) => record.serverId));
    const summary = `${records.length} connection${records.length === 1 ? '' : 's'}, ${sessions.size} session${sessions.size === 1 ? '' : 's'}, `
      + `origins ${[...origins].join(', ')}, servers ${[...servers].join(', ')}, since ${clock(records[0].connectedAt)}`;
    const notify = el('button', { class: 'small secondary', text: 'Notify', attrs: { type: 'button' } });
    notify.addEventListener('click', () => this.notifyUser(user));
    const disconnect = confirmButton('Disconnect user', 'Confirm disconnect', async () => {
      await this.api.disconnectUser(user);
      setTimeout(() => this.load(), 300);
      return `Disconnected every connection of ${user} (close code 4011).`;
    }, `disconnect-user:${user}`);
    const revokeAll = confirmButton('Revoke all tokens', 'Confirm revoke all', async () => {
      await this.api.revokeUser(user);
      setTimeout(() => this.load(), 300);
      return `Revoked every token of ${user} issued until now: its connections close with 4009 and cannot reconnect with them.`;
    }, `revoke-user:${user}`);
    const header = el('div', { class: 'group-head' }, [
      el('h3', { text: user }),
      el('p', { class: 'muted summary', text: summary }),
      el('div', { class: 'actions' }, [notify, disconnect, revokeAll]),
    ]);
    const rows = records.map((record) => {
      const cells = [
        el('td', { text: record.sessionId ?? '—' }),
        el('td', { text: record.origin ?? '—' }),
        el('td', { text: record.serverId }),
        el('td', { text: clock(record.connectedAt), attrs: { title: String(record.connectedAt) } }),
        el('td', { text: `${record.remoteAddress}${record.admin ? ' (admin)' : ''}` }),
      ];
      const actions = el('td', { class: 'actions' });
      if (record.sessionId) {
        actions.append(
          confirmButton('Revoke session', 'Confirm revoke', async () => {
            await this.api.revokeSession(record.sessionId, record.userId);
            setTimeout(() => this.load(), 300);
            return `Revoked session ${record.sessionId} of ${record.userId}: its connections close with 4009.`;
          }, `revoke-session:${record.connectionId}`),
        );
      }
      cells.push(actions);
      return el('tr', { attrs: { 'data-connection': record.connectionId } }, cells);
    });
    const head = el('tr', {}, ['Session', 'Origin', 'Server', 'Since', 'Address', ''].map((text) => el('th', { text, attrs: { scope: 'col' } })));
    const table = el('table', { class: 'connections-table' }, [el('thead', {}, [head]), el('tbody', {}, rows)]);
    return el('article', { class: 'group', attrs: { 'data-user': user } }, [header, table]);
  }
}
