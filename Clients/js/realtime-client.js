// SPDX-License-Identifier: Apache-2.0
//
// realtime-client.js: the browser client of RealtimeHub (Documentation/Client.md). One dependency-free ES module;
// no build step. Served by realtime-server at /client/realtime-client.js.
//
//   import { RealtimeClient } from '/client/realtime-client.js';
//   const client = new RealtimeClient({ url: '/ws/events', getToken: () => fetchMyToken() });
//   client.onEvent('security.*', (event) => console.log(event.type, event.data));
//   client.on('disconnected', ({ code, reason, willReconnect }) => console.log(code, reason, willReconnect));
//   client.subscribe(['security.*', 'session.*']);
//   client.connect();

/**
 * @typedef {Object} RealtimeClientOptions
 * @property {string} url The WebSocket endpoint: `wss://host/ws/events`, `https://host/ws/events` (turned into
 *   `wss:`), or a path such as `/ws/admin` resolved against the page's location.
 * @property {() => (string | Promise<string>)} getToken Returns a valid access token. Awaited before every
 *   connection attempt and before the current token expires (the client then refreshes in-band with
 *   `refresh_token`), so it must return a fresh token each time it is called near expiry.
 * @property {'query' | 'message'} [auth='query'] How the token travels: `query` puts it in `?token=` on the upgrade
 *   (browsers cannot set `Authorization` on a WebSocket); `message` sends it as the first `auth` message (the
 *   server needs `WEBSOCKET_FIRST_MESSAGE_AUTH=true`; keeps the token out of URLs and proxy logs).
 * @property {string[]} [subscriptions] Patterns to subscribe to on every connection (same as `subscribe()`).
 * @property {number} [minReconnectDelayMs=500] The base of the exponential backoff.
 * @property {number} [maxReconnectDelayMs=30000] The cap of the exponential backoff.
 * @property {number} [maxReconnectAttempts=Infinity] Consecutive failed attempts before the client gives up.
 * @property {number} [stableAfterMs=30000] A connection open this long resets the backoff when it closes.
 * @property {number} [refreshBeforeExpiryMs=60000] How long before `exp` the token is refreshed (at most half
 *   of the token's remaining lifetime).
 * @property {number} [requestTimeoutMs=10000] How long a request (`subscribe`, `ping`, ...) waits for its reply.
 * @property {boolean} [recover=true] Send the stream positions seen so far when resubscribing, where the server
 *   offers recovery.
 * @property {typeof WebSocket} [WebSocket] The WebSocket constructor (default: the global one).
 * @property {() => number} [random] A uniform random number in [0, 1) for the jitter (default `Math.random`).
 */

/**
 * An event as the server delivers it (`event` messages).
 * @typedef {Object} RealtimeEvent
 * @property {string} id
 * @property {string} type Such as `security.suspicious.activity`.
 * @property {string} [userId]
 * @property {string} [sessionId]
 * @property {string} timestamp ISO 8601.
 * @property {Object<string, any>} data
 * @property {any} [position] The event's stream position, where the server keeps history.
 */

/**
 * A notification (`notification` messages; no subscription needed).
 * @typedef {Object} RealtimeNotification
 * @property {string} id
 * @property {'info' | 'success' | 'warning' | 'error' | 'critical'} level
 * @property {string} title
 * @property {string} message
 * @property {Object<string, any>} data
 * @property {string} timestamp
 */

/**
 * @typedef {Object} ConnectedInfo
 * @property {string} connectionId
 * @property {string} serverId
 * @property {string} userId
 * @property {string} endpoint `events` or `admin`.
 * @property {number} heartbeatIntervalMs
 * @property {string | null} expiresAt
 * @property {{maxMessageBytes: number, maxSubscriptions: number, messagesPerSecond: number}} limits
 * @property {boolean} reconnected Whether an earlier connection of this client preceded this one.
 * @property {boolean | null} recovered After a reconnect: whether the events missed meanwhile were replayed
 *   (`false`: resynchronise from your own source of truth); `null` on the first connection.
 */

/**
 * @typedef {Object} DisconnectedInfo
 * @property {number} code The WebSocket close code (1006 when the connection failed or the upgrade was refused:
 *   browsers do not expose the HTTP status).
 * @property {string} reason
 * @property {boolean} willReconnect
 * @property {number | null} retryInMs When the next attempt starts, if any.
 */

/**
 * @typedef {Object} ClientError
 * @property {string} code A server error code (`rate_limited`, `forbidden_pattern`, `token_invalid`, ...) or one
 *   of the client's: `token_unavailable` (getToken failed), `token_not_renewed` (getToken returned a token that
 *   expires no later), `reconnect_exhausted`, `invalid_message`.
 * @property {string} message
 * @property {number} [retryAfterMs]
 */

/**
 * The events `on()` accepts and what their listeners receive.
 * @typedef {Object} RealtimeClientEventMap
 * @property {ConnectedInfo} connected
 * @property {DisconnectedInfo} disconnected
 * @property {ClientError} error
 * @property {{from: string, to: string, reason: string}} gap Events may have been missed in this window
 *   (the server's `gap` message, or a slow-consumer close): refetch what matters.
 * @property {RealtimeEvent} event Every event.
 * @property {RealtimeNotification} notification
 * @property {Object<string, any>} stats Periodic statistics (admin connections).
 * @property {{expiresAt: string}} tokenRefreshed
 * @property {{recovered: boolean} & Object<string, any>} recovered The server's answer to a recovery.
 * @property {{state: ClientState}} state
 * @property {{type: string, payload?: any, id?: string | number}} message Every message, raw.
 */

/** @typedef {'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'} ClientState */

/** Close codes after which the client does not reconnect (Documentation/Protocol.md, "Close codes"). */
export const TERMINAL_CLOSE_CODES = Object.freeze({
  1000: 'closed normally',
  4001: 'authentication refused',
  4009: 'session revoked',
  4011: 'disconnected by an operator',
});

/** Server messages passed to the listeners of the event of the same name, as they are. */
const FORWARDED_MESSAGES = new Set(['notification', 'stats', 'gap', 'error']);

const SEGMENT = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_PATTERN_BYTES = 200;
const MAX_SEGMENTS = 8;
const MAX_PATTERNS_PER_MESSAGE = 50;

/** The server's refusals of a subscription: the pattern itself is wrong for this connection, so it is forgotten. */
const SUBSCRIPTION_REFUSALS = new Set(['invalid_pattern', 'forbidden_pattern', 'too_many_subscriptions']);

/** How often a subscription whose reply timed out is sent again on the same connection. */
const SUBSCRIBE_ATTEMPTS = 3;

/** How many of the latest events and notifications the client remembers to drop one delivered twice. */
const RECENT_EVENT_IDS = 1024;

/** The wait before refreshing a token that looks expired on this device and has no `iat` (clock skew). */
const MIN_REFRESH_INTERVAL_MS = 5000;

/**
 * A parsed subscription pattern, with the server's rules (`EventPattern`): an exact type; a trailing `*` that
 * matches one or more further segments (`security.*` matches `security.a.b`, not `security`); a `*` in the middle
 * that matches one segment; `*` alone that matches everything.
 */
export class EventPattern {
  /**
   * @param {string} text
   * @throws {TypeError} when the pattern is not well-formed.
   */
  constructor(text) {
    if (typeof text !== 'string' || text.length === 0) throw new TypeError('a pattern is a non-empty string');
    if (new TextEncoder().encode(text).length > MAX_PATTERN_BYTES) {
      throw new TypeError(`pattern longer than ${MAX_PATTERN_BYTES} bytes`);
    }
    const parts = text.split('.');
    if (parts.length > MAX_SEGMENTS) throw new TypeError(`pattern with more than ${MAX_SEGMENTS} segments`);
    for (const part of parts) {
      if (part !== '*' && !SEGMENT.test(part)) throw new TypeError(`invalid pattern segment '${part}' in '${text}'`);
    }
    /** @readonly */ this.text = text;
    /** @readonly */ this.isPrefix = parts[parts.length - 1] === '*';
    /** @readonly @type {(string | null)[]} */
    this.segments = (this.isPrefix ? parts.slice(0, -1) : parts).map((part) => (part === '*' ? null : part));
  }

  /**
   * @param {string} type An event type such as `authentication.login.failure`.
   * @returns {boolean}
   */
  matches(type) {
    const parts = String(type).split('.');
    if (this.isPrefix ? parts.length <= this.segments.length : parts.length !== this.segments.length) return false;
    return this.segments.every((segment, index) => segment === null || segment === parts[index]);
  }
}

/**
 * The claims of a JWT, decoded without verifying the token (the server verifies); `null` when it cannot be
 * decoded. For display and scheduling only: never trust them.
 * @param {string} token
 * @returns {Object<string, any> | null}
 */
export function tokenClaims(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/**
 * The `exp` claim of a JWT in milliseconds since 1970 (see `tokenClaims`); `null` when it has none.
 * @param {string} token
 * @returns {number | null}
 */
export function tokenExpiry(token) {
  const exp = tokenClaims(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
}

/**
 * The delay before reconnect attempt `attempt` (1, 2, ...): exponential backoff with full jitter, a uniform
 * delay between 0 and `min(max, base * 2^(attempt - 1))`.
 * @param {number} attempt
 * @param {{minReconnectDelayMs: number, maxReconnectDelayMs: number, random: () => number}} options
 * @returns {number}
 */
export function backoffDelay(attempt, options) {
  const ceiling = Math.min(options.maxReconnectDelayMs, options.minReconnectDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(options.random() * ceiling);
}

/** A WebSocket client of RealtimeHub with reconnect, resubscribe and token refresh. */
export class RealtimeClient {
  /** @param {RealtimeClientOptions} options */
  constructor(options) {
    if (!options || typeof options.url !== 'string') throw new TypeError('options.url is required');
    if (typeof options.getToken !== 'function') throw new TypeError('options.getToken must be a function');
    if (options.auth !== undefined && options.auth !== 'query' && options.auth !== 'message') {
      throw new TypeError("options.auth must be 'query' or 'message'");
    }
    this.options = {
      auth: 'query',
      minReconnectDelayMs: 500,
      maxReconnectDelayMs: 30000,
      maxReconnectAttempts: Infinity,
      stableAfterMs: 30000,
      refreshBeforeExpiryMs: 60000,
      requestTimeoutMs: 10000,
      recover: true,
      random: Math.random,
      ...options,
    };
    /** @type {ClientState} */
    this._state = 'idle';
    /** @type {Map<string, EventPattern>} the patterns to hold on every connection */
    this._subscriptions = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {{pattern: EventPattern, handler: (event: RealtimeEvent) => void}[]} */
    this._eventHandlers = [];
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @type {Map<string, any>} the last position seen per stream (recovery) */
    this.positions = new Map();
    /** @type {Set<string>} the type and id of the latest events and notifications delivered, oldest first */
    this._recentEventIds = new Set();
    /** @type {ConnectedInfo | null} */
    this.connection = null;
    this._socket = null;
    this._token = null;
    this._attempt = 0;
    this._requestCounter = 0;
    this._everConnected = false;
    this._openedAt = 0;
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._refreshing = null;
    this._retryAfterMs = null;
    for (const pattern of options.subscriptions ?? []) this._addPattern(pattern);
  }

  /** @returns {ClientState} */
  get state() {
    return this._state;
  }

  /** Whether a reconnect attempt is scheduled. */
  get reconnectScheduled() {
    return this._reconnectTimer !== null;
  }

  /**
   * Listens to one of the client's events (see RealtimeClientEventMap). Returns a function that removes it.
   * @template {keyof RealtimeClientEventMap} K
   * @param {K} name
   * @param {(detail: RealtimeClientEventMap[K]) => void} listener
   * @returns {() => void}
   */
  on(name, listener) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(listener);
    return () => this.off(name, listener);
  }

  /**
   * @template {keyof RealtimeClientEventMap} K
   * @param {K} name
   * @param {(detail: RealtimeClientEventMap[K]) => void} listener
   */
  off(name, listener) {
    this._listeners.get(name)?.delete(listener);
  }

  /**
   * Calls `handler` for every event whose type matches `pattern` (the server's pattern rules). Local dispatch only:
   * the connection receives what it subscribed to (`subscribe()`). Returns a function that removes the handler.
   * @param {string} pattern
   * @param {(event: RealtimeEvent) => void} handler
   * @returns {() => void}
   */
  onEvent(pattern, handler) {
    const entry = { pattern: new EventPattern(pattern), handler };
    this._eventHandlers.push(entry);
    return () => {
      this._eventHandlers = this._eventHandlers.filter((candidate) => candidate !== entry);
    };
  }

  /** Opens the connection (and keeps it open: reconnects until `close()` or a terminal close code). */
  connect() {
    if (this._state === 'connecting' || this._state === 'open' || this._state === 'reconnecting') return;
    this._attempt = 0;
    this._open();
  }

  /**
   * Closes the connection for good (close code 1000); no reconnect.
   * @param {string} [reason]
   */
  close(reason = 'client closed') {
    this._clearTimers();
    const socket = this._socket;
    this._socket = null;
    this._setState('closed');
    if (socket && socket.readyState <= 1) socket.close(1000, reason);
    this._rejectPending(new Error('the client was closed'));
  }

  /**
   * Adds patterns to the subscriptions held on every connection. When connected, resolves with the server's
   * `subscribed` reply (`{eventTypes, subscriptions}`); otherwise with `null`, and the patterns are sent on
   * connect. A refused subscription (`invalid_pattern`, `forbidden_pattern`, `too_many_subscriptions`) rejects
   * with the server's error and is forgotten.
   * @param {string[]} patterns
   * @returns {Promise<{eventTypes: string[], subscriptions: string[]} | null>}
   */
  async subscribe(patterns) {
    const added = patterns.map((pattern) => this._addPattern(pattern)).filter(Boolean);
    if (this._state !== 'open') return null;
    try {
      return await this._request('subscribe', { eventTypes: patterns });
    } catch (error) {
      // Refused: forgotten. Lost with the connection or unanswered: still held, and sent on the next connection.
      if (SUBSCRIPTION_REFUSALS.has(error.code)) for (const pattern of added) this._subscriptions.delete(pattern);
      throw error;
    }
  }

  /**
   * Removes patterns. When connected, resolves with the server's `unsubscribed` reply; otherwise with `null`.
   * @param {string[]} patterns
   * @returns {Promise<{eventTypes: string[], subscriptions: string[]} | null>}
   */
  async unsubscribe(patterns) {
    for (const pattern of patterns) this._subscriptions.delete(pattern);
    if (this._state !== 'open') return null;
    return this._request('unsubscribe', { eventTypes: patterns });
  }

  /**
   * The connection's subscriptions as the server holds them.
   * @returns {Promise<string[]>}
   */
  async getSubscriptions() {
    const reply = await this._request('get_subscriptions');
    return reply.eventTypes;
  }

  /**
   * Pings the server; resolves with the round-trip time and the server's timestamp.
   * @returns {Promise<{rttMs: number, timestamp: string}>}
   */
  async ping() {
    const started = performance.now();
    const reply = await this._request('ping');
    return { rttMs: performance.now() - started, timestamp: reply.timestamp };
  }

  /**
   * Refreshes the token in-band now: awaits `getToken()` and sends `refresh_token`. Resolves with the new expiry.
   * The client does this by itself before the token expires.
   * @returns {Promise<{expiresAt: string}>}
   */
  refreshToken() {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  // MARK: Connection

  async _open() {
    this._setState(this._everConnected ? 'reconnecting' : 'connecting');
    let token;
    try {
      token = await this._fetchToken();
      if (typeof token !== 'string' || token.length === 0) throw new Error('getToken() returned no token');
    } catch (error) {
      if (this._state === 'closed') return;
      this._emit('error', { code: 'token_unavailable', message: String(error?.message ?? error) });
      this._scheduleReconnect(1006, 'no token', false);
      return;
    }
    if (this._state === 'closed') return;
    this._token = token;
    let url = this._endpoint();
    if (this.options.auth === 'query') url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
    const Socket = this.options.WebSocket ?? globalThis.WebSocket;
    let socket;
    try {
      socket = new Socket(url);
    } catch (error) {
      this._emit('error', { code: 'invalid_url', message: String(error?.message ?? error) });
      this._setState('closed');
      return;
    }
    this._socket = socket;
    this._retryAfterMs = null;
    socket.onopen = () => {
      if (this._socket !== socket) return;
      if (this.options.auth === 'message') this._send({ type: 'auth', payload: { token } });
    };
    socket.onmessage = (message) => {
      if (this._socket === socket) this._receive(message.data);
    };
    socket.onclose = (close) => {
      if (this._socket !== socket) return;
      this._socket = null;
      this._closed(close.code, close.reason);
    };
  }

  _endpoint() {
    const base = globalThis.location?.href;
    const url = base ? new URL(this.options.url, base) : new URL(this.options.url);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    return url.toString();
  }

  _closed(code, reason) {
    const wasOpen = this._state === 'open';
    this._clearTimers();
    this._rejectPending(Object.assign(new Error(`disconnected (${code})`), { code: 'disconnected' }));
    if (wasOpen && performance.now() - this._openedAt >= this.options.stableAfterMs) this._attempt = 0;
    if (code === 4010) {
      const now = new Date().toISOString();
      this._emit('gap', { from: now, to: now, reason: 'slow_consumer' });
    }
    if (this._state === 'closed') return;
    if (code in TERMINAL_CLOSE_CODES) {
      this._setState('closed');
      this._emit('disconnected', { code, reason, willReconnect: false, retryInMs: null });
      return;
    }
    this._scheduleReconnect(code, reason, true);
  }

  _scheduleReconnect(code, reason, announce) {
    this._attempt += 1;
    if (this._attempt > this.options.maxReconnectAttempts) {
      this._setState('closed');
      if (announce) this._emit('disconnected', { code, reason, willReconnect: false, retryInMs: null });
      this._emit('error', { code: 'reconnect_exhausted', message: `gave up after ${this._attempt - 1} attempts` });
      return;
    }
    const delay = this._retryAfterMs ?? backoffDelay(this._attempt, this.options);
    this._retryAfterMs = null;
    this._setState('reconnecting');
    if (announce) this._emit('disconnected', { code, reason, willReconnect: true, retryInMs: delay });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  _clearTimers() {
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._refreshTimer);
    this._reconnectTimer = null;
    this._refreshTimer = null;
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit('state', { state });
  }

  // MARK: Messages

  _receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this._emit('error', { code: 'invalid_message', message: 'the server sent a message that is not JSON' });
      return;
    }
    if (!message || typeof message.type !== 'string') return;
    this._emit('message', message);
    const payload = message.payload ?? {};
    if (message.id !== undefined && this._pending.has(String(message.id))) {
      const pending = this._pending.get(String(message.id));
      this._pending.delete(String(message.id));
      clearTimeout(pending.timer);
      if (message.type === 'error') {
        pending.reject(Object.assign(new Error(payload.message ?? payload.code), payload));
      } else {
        pending.resolve(payload);
      }
      if (message.type === 'subscribed') {
        this._notePositions(payload.positions);
        if ('recovered' in payload) this._recovered(payload);
      }
      return;
    }
    if (FORWARDED_MESSAGES.has(message.type)) {
      if (message.type === 'notification') {
        // Administrators' and everyone's notifications take a place in their stream, like events, and can be sent
        // twice like them.
        if (payload.position !== undefined) this._notePosition(payload.position);
        if (this._isRepeat('notification', payload.id)) return;
      }
      this._emit(message.type, payload);
      return;
    }
    switch (message.type) {
      case 'connected':
        this._connected(payload);
        break;
      case 'event':
        this._event(payload);
        break;
      case 'token_expiring':
        this.refreshToken().catch(() => {});
        break;
      case 'reconnect':
        if (Number.isFinite(payload.retryAfterMs)) this._retryAfterMs = Math.max(0, payload.retryAfterMs);
        break;
      case 'recovered':
        this._recovered(payload);
        break;
      default:
        break;
    }
  }

  _connected(payload) {
    const reconnected = this._everConnected;
    this._everConnected = true;
    this._openedAt = performance.now();
    this._setState('open');
    const recovery = this.options.recover && Boolean(payload.recovery) && this.positions.size > 0;
    this.connection = { ...payload, reconnected, recovered: reconnected ? (recovery ? null : false) : null };
    this._scheduleRefresh();
    this._resubscribe(recovery);
    this._emit('connected', this.connection);
  }

  _resubscribe(recovery) {
    const patterns = [...this._subscriptions.keys()];
    for (let start = 0; start < patterns.length; start += MAX_PATTERNS_PER_MESSAGE) {
      const payload = { eventTypes: patterns.slice(start, start + MAX_PATTERNS_PER_MESSAGE) };
      if (recovery && start === 0) payload.recover = Object.fromEntries(this.positions);
      this._sendSubscription(payload, this._socket, 1);
    }
  }

  /**
   * Sends one `subscribe` of a (re)connection. Only the server's refusal of a pattern forgets it: a connection
   * lost before the reply leaves the patterns for the next connection (which sends them all again), and a reply
   * that does not come in time sends them again on the same connection (without `recover`, which a connection may
   * ask once), up to `SUBSCRIBE_ATTEMPTS` times. Forgetting them on any failure left a client that reconnected
   * into a crashing server `open` with no subscription at all.
   */
  _sendSubscription(payload, socket, attempt) {
    this._request('subscribe', payload).catch((error) => {
      if (error.code === 'disconnected' || error.code === 'not_connected') return;
      if (SUBSCRIPTION_REFUSALS.has(error.code)) {
        for (const pattern of payload.eventTypes) this._subscriptions.delete(pattern);
      }
      this._emit('error', { code: error.code ?? 'subscribe_failed', message: error.message });
      if (error.code === 'timeout' && attempt < SUBSCRIBE_ATTEMPTS && this._socket === socket) {
        const held = payload.eventTypes.filter((pattern) => this._subscriptions.has(pattern));
        if (held.length > 0) this._sendSubscription({ eventTypes: held }, socket, attempt + 1);
      }
    });
  }

  _recovered(payload) {
    this._notePositions(payload.positions);
    const recovered = payload.recovered === true;
    if (this.connection) this.connection.recovered = recovered;
    this._emit('recovered', { ...payload, recovered });
  }

  /** Keeps the furthest position per stream: a position of another epoch replaces it, a lower offset does not. */
  _notePosition(position) {
    if (!position || typeof position !== 'object') return;
    const stream = String(position.stream ?? '*');
    const known = this.positions.get(stream);
    if (known && known.epoch === position.epoch && Number(known.offset) >= Number(position.offset)) return;
    this.positions.set(stream, position);
  }

  /** Positions the server reports (`subscribed`, `recovered`): `{stream: position}`. */
  _notePositions(positions) {
    if (!positions || typeof positions !== 'object') return;
    for (const position of Object.values(positions)) this._notePosition(position);
  }

  _event(payload) {
    if (payload.position !== undefined) this._notePosition(payload.position);
    if (this._isRepeat(payload.type, payload.id)) return;
    this._emit('event', payload);
    for (const { pattern, handler } of this._eventHandlers) {
      if (pattern.matches(payload.type)) this._call(handler, payload);
    }
  }

  /**
   * Whether an event of `type` (or a notification) with this `id` was delivered among the latest ones; notes it if
   * not. A server can send one twice (its Redis connection lost the reply to a publish that went through, so it was
   * published again), and so can a publisher that retries a publish with the same `id` after losing the answer.
   */
  _isRepeat(type, id) {
    if (typeof id !== 'string') return false;
    const key = `${type}\u0000${id}`;
    if (this._recentEventIds.has(key)) return true;
    this._recentEventIds.add(key);
    if (this._recentEventIds.size > RECENT_EVENT_IDS) {
      this._recentEventIds.delete(this._recentEventIds.values().next().value);
    }
    return false;
  }

  _addPattern(pattern) {
    if (this._subscriptions.has(pattern)) return null;
    this._subscriptions.set(pattern, new EventPattern(pattern));
    return pattern;
  }

  _send(message) {
    if (!this._socket || this._socket.readyState !== 1) return false;
    this._socket.send(JSON.stringify(message));
    return true;
  }

  _request(type, payload) {
    return new Promise((resolve, reject) => {
      const id = `c${++this._requestCounter}`;
      const message = payload === undefined ? { type, id } : { type, id, payload };
      if (!this._send(message)) {
        reject(Object.assign(new Error('not connected'), { code: 'not_connected' }));
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(Object.assign(new Error(`no reply to ${type}`), { code: 'timeout' }));
      }, this.options.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
    });
  }

  _rejectPending(error) {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(error);
    }
    this._pending.clear();
  }

  // MARK: Token refresh

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    const expiry = tokenExpiry(this._token);
    if (expiry === null) return;
    const remaining = expiry - Date.now();
    let delay = Math.max(0, remaining - Math.min(this.options.refreshBeforeExpiryMs, remaining / 2));
    if (remaining <= 0) {
      // The server took this token, yet it looks expired here: this device's clock is ahead of the server's. Without
      // a floor the client would refresh (and call getToken) in a loop. A quarter of the token's lifetime (`iat` to
      // `exp`, which no clock changes) keeps it refreshed in time by the server's clock.
      const issued = tokenClaims(this._token)?.iat;
      const lifetime = typeof issued === 'number' && Number.isFinite(issued) ? expiry - issued * 1000 : 0;
      delay = lifetime > 0 ? lifetime / 4 : MIN_REFRESH_INTERVAL_MS;
    }
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this.refreshToken().catch(() => {});
    }, delay);
  }

  /**
   * `getToken()`, or a `timeout` error when it has not settled within `requestTimeoutMs` (a `getToken()` that never
   * settles must not leave the client waiting forever with no timer and no error).
   */
  _fetchToken() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`getToken() did not settle within ${this.options.requestTimeoutMs} ms`)),
        this.options.requestTimeoutMs
      );
      Promise.resolve()
        .then(() => this.options.getToken())
        .then(resolve, reject)
        .finally(() => clearTimeout(timer));
    });
  }

  async _refresh() {
    let token;
    try {
      token = await this._fetchToken();
    } catch (error) {
      const failure = { code: 'token_unavailable', message: String(error?.message ?? error) };
      this._emit('error', failure);
      this._retryRefresh();
      throw Object.assign(new Error(failure.message), failure);
    }
    const previous = tokenExpiry(this._token);
    const next = tokenExpiry(token);
    if (previous !== null && (next === null || next <= previous)) {
      const failure = { code: 'token_not_renewed', message: 'getToken() returned a token that expires no later' };
      this._emit('error', failure);
      this._retryRefresh();
      throw Object.assign(new Error(failure.message), failure);
    }
    try {
      const reply = await this._request('refresh_token', { token });
      this._token = token;
      this._scheduleRefresh();
      this._emit('tokenRefreshed', reply);
      return reply;
    } catch (error) {
      if (error.code !== 'disconnected' && error.code !== 'not_connected') {
        this._emit('error', { code: error.code ?? 'refresh_failed', message: error.message });
        this._retryRefresh(error.retryAfterMs);
      }
      throw error;
    }
  }

  /** Tries the refresh again later, while the token has not expired (the server closes with 4002 then). */
  _retryRefresh(afterMs) {
    if (this._state !== 'open') return;
    const expiry = tokenExpiry(this._token);
    const remaining = expiry === null ? 0 : expiry - Date.now();
    if (remaining <= 0) return;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      this.refreshToken().catch(() => {});
    }, Math.min(remaining / 2, afterMs ?? Math.max(1000, remaining / 4)));
  }

  // MARK: Listeners

  _emit(name, detail) {
    for (const listener of this._listeners.get(name) ?? []) this._call(listener, detail);
  }

  _call(listener, detail) {
    try {
      listener(detail);
    } catch (error) {
      // A listener's failure must not break the client: report it as an uncaught error, asynchronously.
      setTimeout(() => {
        throw error;
      });
    }
  }
}
