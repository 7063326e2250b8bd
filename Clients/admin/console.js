// SPDX-License-Identifier: Apache-2.0
//
// The admin console of realtime-server (Documentation/Client.md, "The admin console"). Signs in with a pasted
// administrator token (sessionStorage only), follows /ws/admin with the browser client library, and uses the
// HTTP API with the token in an Authorization header.

import { EventPattern, RealtimeClient, tokenClaims } from '/client/realtime-client.js';
import { API } from './api.js';
import { LineChart, StatsFeed } from './charts.js';
import { ConnectionsView } from './connections-view.js';
import { byId, el, toast } from './dom.js';
import { EventsView } from './events-view.js';

const TOKEN_KEY = 'realtimehub.adminToken';
/** Events after which the connection list is reloaded. */
const CONNECTION_CHANGES = ['presence.*', 'admin.connection.opened', 'session.revoked'].map((text) => new EventPattern(text));

class Console {
  constructor(settings) {
    this.settings = settings;
    this.api = new API(settings.apiPrefix, () => sessionStorage.getItem(TOKEN_KEY));
    this.events = new EventsView();
    this.connections = new ConnectionsView(this.api, (user) => this.prepareNotification(user));
    this.stats = new StatsFeed(
      this.api,
      {
        connections: new LineChart(byId('chart-connections')),
        delivered: new LineChart(byId('chart-delivered'), { unit: '/s' }),
        dropped: new LineChart(byId('chart-dropped'), { unit: '/s' }),
      },
      byId('chart-legend'),
      (text) => {
        byId('stats-summary').textContent = text;
      },
    );
    this.client = null;
    this.refreshTimer = null;
    byId('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.signIn(byId('token-input').value.trim());
    });
    byId('sign-out').addEventListener('click', () => this.signOut('Signed out.'));
    this.wireNotificationForm();
  }

  /** Signs in again with the token of this tab's session, if any (a reload keeps the console signed in). */
  async start() {
    // Enabled only now: a click before the handlers exist would submit the form natively.
    byId('sign-in-button').disabled = false;
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) await this.signIn(token);
  }

  async signIn(token) {
    const error = byId('sign-in-error');
    error.textContent = '';
    if (!token) {
      error.textContent = 'Paste an administrator token.';
      return;
    }
    // A bearer token is one word of these characters (RFC 6750 token68): a space or line break came with the paste.
    if (!/^[A-Za-z0-9._~+/-]+=*$/.test(token)) {
      error.textContent = 'That is not a token: it contains spaces, line breaks or other characters a token cannot have.';
      return;
    }
    try {
      await new API(this.settings.apiPrefix, () => token).stats();
    } catch (failure) {
      error.textContent = failure.status === 403 ? 'This token is valid but not an administrator’s.' : failure.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    byId('token-input').value = '';
    const claims = tokenClaims(token) ?? {};
    const expires = typeof claims.exp === 'number' ? `, token expires ${new Date(claims.exp * 1000).toLocaleString()}` : '';
    byId('identity').textContent = `${claims.sub ?? 'unknown'} on ${this.settings.serverId}${expires}`;
    byId('sign-in').hidden = true;
    byId('dashboard').hidden = false;
    byId('sign-out').hidden = false;
    this.setBanner('');
    this.connect();
    this.stats.start();
    this.connections.load('');
  }

  signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    this.client?.close('signed out');
    this.client = null;
    this.stats.stop();
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    byId('dashboard').hidden = true;
    byId('sign-in').hidden = false;
    byId('sign-out').hidden = true;
    byId('identity').textContent = '';
    this.setStatus('closed', 'not connected');
    if (message) byId('sign-in-error').textContent = message;
  }

  connect() {
    this.client?.close('reconnecting');
    const client = new RealtimeClient({
      url: this.settings.adminPath,
      auth: this.settings.firstMessageAuth ? 'message' : 'query',
      getToken: () => sessionStorage.getItem(TOKEN_KEY) ?? '',
      subscriptions: ['*'],
      maxReconnectDelayMs: 10000,
    });
    // "live" once the server holds the console's subscription, not at `connected`: the subscription is sent right
    // after it, and an event published in between would be missed while the console already said "live" (a
    // browser test raced on this). The server answers a connection's requests in order, so the reply to
    // `get_subscriptions` comes after the subscription is in place.
    client.on('state', ({ state }) => {
      if (state !== 'open') this.setStatus(state, state);
    });
    client.on('event', (event) => {
      this.events.addEvent(event);
      if (CONNECTION_CHANGES.some((pattern) => pattern.matches(event.type))) this.refreshConnectionsSoon();
    });
    client.on('notification', (notification) => this.events.addNotification(notification));
    client.on('gap', (gap) => toast(`Events may have been missed (${gap.reason}).`, 'error'));
    client.on('connected', (info) => {
      client
        .getSubscriptions()
        .catch(() => null)
        .then(() => {
          if (this.client === client && client.state === 'open') this.setStatus('open', 'live');
        });
      this.refreshConnectionsSoon();
      if (info.reconnected) toast(`Reconnected to ${info.serverId}; events sent meanwhile were missed.`, 'ok');
    });
    client.on('disconnected', ({ code, reason }) => {
      if (code === 4009 || code === 4001 || code === 4011) {
        this.signOut(`The server closed the console’s connection (${code}: ${reason || 'no reason'}). Sign in again.`);
      } else if (code === 4002) {
        this.signOut('Your administrator token expired. Paste a new one.');
      }
    });
    client.on('error', (error) => {
      if (error.code === 'token_not_renewed') {
        this.setBanner('Your administrator token expires soon: sign out and sign in with a new one.');
      } else {
        toast(`${error.code}: ${error.message}`, 'error');
      }
    });
    this.client = client;
    client.connect();
  }

  /** Reloads the first page of connections soon: once for a burst of changes, at most every 5 s. */
  refreshConnectionsSoon() {
    if (this.refreshTimer !== null) return;
    const wait = Math.max(500, (this.lastRefresh ?? 0) + 5000 - Date.now());
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.lastRefresh = Date.now();
      this.connections.load();
    }, wait);
  }

  setStatus(state, text) {
    const status = byId('socket-status');
    status.dataset.state = state;
    status.textContent = text;
  }

  setBanner(text) {
    const banner = byId('banner');
    banner.textContent = text;
    banner.hidden = text === '';
  }

  prepareNotification(user) {
    byId('notify-target').value = 'user';
    byId('notify-user').value = user;
    byId('notify-user').disabled = false;
    byId('notify-title-input').focus();
  }

  wireNotificationForm() {
    const target = byId('notify-target');
    const user = byId('notify-user');
    target.addEventListener('change', () => {
      user.disabled = target.value !== 'user';
    });
    byId('notify-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = {
        level: byId('notify-level').value,
        title: byId('notify-title-input').value.trim(),
        message: byId('notify-message').value.trim(),
      };
      if (target.value === 'user') body.userId = user.value.trim();
      if (!body.title || !body.message || (target.value === 'user' && !body.userId)) {
        toast('A notification needs a title, a message and, for one user, the user.', 'error');
        return;
      }
      const button = event.submitter ?? byId('notify-form').querySelector('button');
      button.disabled = true;
      try {
        const receipt = await this.api.notify(target.value, body);
        const to = target.value === 'user' ? `user ${body.userId}` : target.value === 'admin' ? 'administrators' : 'everyone';
        toast(`Notification ${receipt.id} sent to ${to} (${receipt.localDeliveries} on this server${receipt.publishedToCluster ? ', and to the cluster' : ''}).`);
      } catch (error) {
        toast(`Notification not sent: ${error.message}`, 'error');
      } finally {
        button.disabled = false;
      }
    });
  }
}

async function main() {
  let settings;
  try {
    const response = await fetch('/admin/settings.json', { credentials: 'omit', cache: 'no-store' });
    settings = await response.json();
  } catch (error) {
    document.body.replaceChildren(el('p', { class: 'error', text: `The console could not load its settings: ${error.message}` }));
    return;
  }
  await new Console(settings).start();
}

main();
