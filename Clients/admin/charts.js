// SPDX-License-Identifier: Apache-2.0
//
// Live charts drawn on <canvas> by the page: connections, and events delivered and dropped per second, one line
// per server of the cluster. Fed by StatsFeed from GET /api/v1/stats.

import { el } from './dom.js';

const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4', '#57606a'];

/** A line chart of a few series over a sliding time window. */
export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{windowMs?: number, unit?: string}} [options]
   */
  constructor(canvas, { windowMs = 5 * 60 * 1000, unit = '' } = {}) {
    this.canvas = canvas;
    this.windowMs = windowMs;
    this.unit = unit;
    /** @type {Map<string, {t: number, v: number}[]>} */
    this.series = new Map();
    /** @type {(name: string) => string} */
    this.color = () => PALETTE[0];
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /**
   * Adds a point to a series, forgetting points older than the window.
   * @param {string} name
   * @param {number} t milliseconds since 1970
   * @param {number} v
   */
  add(name, t, v) {
    if (!Number.isFinite(v)) return;
    if (!this.series.has(name)) this.series.set(name, []);
    const points = this.series.get(name);
    points.push({ t, v });
    const oldest = t - this.windowMs;
    while (points.length > 0 && points[0].t < oldest) points.shift();
  }

  /** Forgets series that have no point in the window (a server that left). */
  prune(now) {
    for (const [name, points] of this.series) {
      if (points.length === 0 || points[points.length - 1].t < now - this.windowMs) this.series.delete(name);
    }
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext('2d');
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const ink = style.color || '#24292f';
    const left = 44;
    const bottom = height - 18;
    const top = 8;
    const right = width - 8;
    const now = Date.now();
    let max = 0;
    for (const points of this.series.values()) for (const point of points) max = Math.max(max, point.v);
    const ceiling = niceCeiling(Math.max(max, 5));
    const steps = ceiling / 10 ** Math.floor(Math.log10(ceiling)) === 2 ? 4 : 5;

    context.font = '11px system-ui, sans-serif';
    context.fillStyle = ink;
    context.strokeStyle = 'rgba(127, 127, 127, 0.3)';
    context.lineWidth = 1;
    context.textAlign = 'right';
    context.textBaseline = 'middle';
    for (let step = 0; step <= steps; step += 1) {
      const value = (ceiling * step) / steps;
      const y = bottom - ((bottom - top) * step) / steps;
      context.beginPath();
      context.moveTo(left, y);
      context.lineTo(right, y);
      context.stroke();
      context.fillText(formatNumber(value) + this.unit, left - 4, y);
    }
    context.textAlign = 'left';
    context.textBaseline = 'alphabetic';
    context.fillText(`-${Math.round(this.windowMs / 60000)} min`, left, height - 4);
    context.textAlign = 'right';
    context.fillText('now', right, height - 4);

    const x = (t) => left + ((right - left) * (t - (now - this.windowMs))) / this.windowMs;
    const y = (v) => bottom - ((bottom - top) * v) / ceiling;
    context.lineWidth = 2;
    for (const [name, points] of this.series) {
      if (points.length === 0) continue;
      context.strokeStyle = this.color(name);
      context.fillStyle = this.color(name);
      context.beginPath();
      points.forEach((point, index) => {
        if (index === 0) context.moveTo(x(point.t), y(point.v));
        else context.lineTo(x(point.t), y(point.v));
      });
      context.stroke();
      const last = points[points.length - 1];
      context.beginPath();
      context.arc(x(last.t), y(last.v), 2.5, 0, 2 * Math.PI);
      context.fill();
    }
  }
}

/** The smallest of 1, 2, 5 × 10^n at or above `value`. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= value) return factor * power;
  return 10 * power;
}

function formatNumber(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(value % 1e6 === 0 ? 0 : 1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(value % 1e3 === 0 ? 0 : 1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/**
 * Polls the statistics and feeds the charts. This server's figures are fresh at every poll; the other servers'
 * come from their last heartbeat report (every 10 s by default), so their rates change at that pace.
 */
export class StatsFeed {
  /**
   * @param {import('./api.js').API} api
   * @param {{connections: LineChart, delivered: LineChart, dropped: LineChart}} charts
   * @param {HTMLElement} legend
   * @param {(text: string) => void} summary
   */
  constructor(api, charts, legend, summary) {
    this.api = api;
    this.charts = charts;
    this.legend = legend;
    this.summary = summary;
    /** @type {Map<string, {at: number, delivered: number, dropped: number}>} the last counters per server */
    this.previous = new Map();
    /** @type {Map<string, string>} */
    this.colors = new Map();
    for (const chart of Object.values(charts)) chart.color = (name) => this.colorOf(name);
    this.timer = null;
  }

  colorOf(server) {
    if (!this.colors.has(server)) this.colors.set(server, PALETTE[this.colors.size % PALETTE.length]);
    return this.colors.get(server);
  }

  /** @param {number} intervalMs */
  start(intervalMs = 2000) {
    this.stop();
    const tick = async () => {
      try {
        this.update(await this.api.stats(), Date.now());
      } catch (error) {
        this.summary(`statistics unavailable: ${error.message}`);
      }
      this.timer = setTimeout(tick, intervalMs);
    };
    tick();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * @param {any} stats the body of GET /api/v1/stats
   * @param {number} now
   */
  update(stats, now) {
    const local = stats.server;
    const reports = (stats.global?.servers ?? []).map((server) => ({
      id: server.serverId,
      at: now - (server.lastReportAgeMs ?? 0),
      connections: server.connections,
      delivered: server.eventsDelivered,
      dropped: server.eventsDropped,
    }));
    const others = reports.filter((report) => report.id !== local.serverId);
    const all = [
      { id: local.serverId, at: now, connections: local.connections, delivered: local.eventsDelivered, dropped: local.eventsDropped },
      ...others,
    ];
    for (const report of all) {
      this.charts.connections.add(report.id, now, report.connections);
      const before = this.previous.get(report.id);
      if (report.delivered === null || report.delivered === undefined) continue;
      if (before && report.at > before.at) {
        const seconds = (report.at - before.at) / 1000;
        this.charts.delivered.add(report.id, now, Math.max(0, report.delivered - before.delivered) / seconds);
        this.charts.dropped.add(report.id, now, Math.max(0, (report.dropped ?? 0) - before.dropped) / seconds);
      }
      if (!before || report.at > before.at) {
        this.previous.set(report.id, { at: report.at, delivered: report.delivered, dropped: report.dropped ?? 0 });
      }
    }
    for (const chart of Object.values(this.charts)) {
      chart.prune(now);
      chart.draw();
    }
    this.renderLegend(all, local.serverId);
    const total = stats.global?.totalConnections ?? local.connections;
    const servers = stats.global?.totalServers ?? 1;
    this.summary(`${total} connections on ${servers} server${servers === 1 ? '' : 's'}`);
  }

  renderLegend(reports, localID) {
    const items = reports.map((report) => {
      const swatch = el('span', { class: 'swatch' });
      swatch.style.backgroundColor = this.colorOf(report.id);
      const label = report.id === localID ? `${report.id} (this server)` : report.id;
      return el('li', {}, [swatch, el('span', { text: `${label}: ${report.connections} connections` })]);
    });
    this.legend.replaceChildren(...items);
  }
}
