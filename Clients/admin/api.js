// SPDX-License-Identifier: Apache-2.0
//
// The HTTP API as the console calls it: the token in an Authorization header (never a cookie: the console sends
// none, `credentials: 'omit'`), JSON in and out, every failure an Error with the server's code and message.

export class APIError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

export class API {
  /**
   * @param {string} prefix such as `/api/v1`
   * @param {() => string | null} token
   */
  constructor(prefix, token) {
    this.prefix = prefix;
    this.token = token;
  }

  /**
   * @param {string} method
   * @param {string} path below the prefix, e.g. `/stats`
   * @param {any} [body]
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${this.token() ?? ''}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(this.prefix + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
        redirect: 'error',
      });
    } catch (error) {
      throw new APIError(0, 'network_error', `the server could not be reached (${error.message})`);
    }
    let json = null;
    try {
      json = await response.json();
    } catch {
      json = null;
    }
    if (!response.ok) {
      throw new APIError(response.status, json?.error?.code ?? 'http_error', json?.error?.message ?? response.statusText);
    }
    return json;
  }

  stats() {
    return this.request('GET', '/stats');
  }

  /**
   * @param {{userId?: string, cursor?: string | null, limit?: number}} options
   */
  connections({ userId, cursor, limit = 100 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (userId) query.set('userId', userId);
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/connections?${query}`);
  }

  /** @param {string} sessionId @param {string} [userId] */
  revokeSession(sessionId, userId) {
    return this.request('POST', `/sessions/${encodeURIComponent(sessionId)}/revoke`, {
      userId,
      reason: 'revoked from the admin console',
    });
  }

  /**
   * Revokes every token of the user issued until now, on every server: they no longer connect, refresh or call
   * the API, and the user's connections close with 4009.
   * @param {string} userId
   */
  revokeUser(userId) {
    return this.request('POST', `/users/${encodeURIComponent(userId)}/revoke`, {
      reason: 'every session revoked from the admin console',
    });
  }

  /** @param {string} userId */
  disconnectUser(userId) {
    return this.request('POST', `/users/${encodeURIComponent(userId)}/disconnect`, {
      reason: 'disconnected from the admin console',
    });
  }

  /**
   * @param {'user' | 'broadcast' | 'admin'} target
   * @param {{userId?: string, level: string, title: string, message: string}} notification
   */
  notify(target, notification) {
    return this.request('POST', `/notifications/${target}`, notification);
  }
}
