// The agent drawer: a modal side panel with one agent's current call — a timeline of the
// last minutes (agent and customer speech, overtalk and dead-air spans, alerts as markers),
// the live masked transcript with the matched policy phrases highlighted, the call's alerts
// (acknowledge from here too) — and the agent's state history today.
//
// Opened from a tile (click, or Enter on the focused tile); closed with Esc, the close button
// or a click beside it, and focus goes back to the tile. While open it polls the hub
// (GET /api/agents/{id}/call every CALL_POLL_MS, /history every HISTORY_POLL_MS and when the
// agent's state changes) and follows the tile and the alerts live.
//
// Listen-in: buttons for listen / whisper / barge, shown per the user's `permissions`, send a
// `fw-listen` CustomEvent {agentId, mode} (bubbling from the button); web/listen.js handles it.
// #drawer-listen-slot is free for that module's status.

import { t, tOr } from './i18n.js';
import { fmtDuration, fmtOffset, fmtSeconds, fmtTimeOfDay, parseTime } from './clock.js';
import { highlightRanges, historyRows, timelineModel, timelineTicks } from './model.js';
import { alertDetail, kindLabel, severityLabel, stateLabel } from './labels.js';

const CALL_POLL_MS = 2000;
const HISTORY_POLL_MS = 15000;
const WINDOW_S = 300;
const LISTEN_MODES = ['listen', 'whisper', 'barge'];
const LANES = ['agent', 'customer', 'overtalk', 'dead_air'];
const ONGOING_KINDS = new Set(['silence', 'overtalk', 'state']);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function startOfToday(now) {
  const d = new Date(now);
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

export class AgentDrawer {
  /**
   * @param {object} o
   * @param {HTMLDialogElement} o.dialog
   * @param {import('./tiles.js').TileGrid} o.grid
   * @param {import('./alerts.js').AlertsPanel} o.panel
   * @param {{now(): number}} o.clock
   * @param {(id: string) => Promise<object>} o.ackRequest  used for alerts the panel does not hold
   * @param {() => void} o.onUnauthorized
   */
  constructor({ dialog, grid, panel, clock, ackRequest, onUnauthorized }) {
    this.dialog = dialog;
    this.grid = grid;
    this.panel = panel;
    this.clock = clock;
    this.ackRequest = ackRequest;
    this.onUnauthorized = onUnauthorized || (() => {});
    this.agentId = null;
    this.opener = null;
    this.call = undefined; // undefined: not loaded; null: not on a call
    this.callAlerts = new Map(); // id -> alert (the call's, acked or not, kept up to date live)
    this.history = null;
    this.permissions = new Set();
    this.pending = new Set(); // acks sent from here for alerts the panel does not hold
    this.errors = { call: '', history: '' };
    this.callTimer = 0;
    this.historyTimer = 0;
    this.stateSeen = null;
    this.callSeen = null;
    this.inflight = { call: null, history: null };
    this.transcriptRows = new Map(); // key -> li

    const q = (sel) => dialog.querySelector(sel);
    this.n = {
      title: q('#drawer-title'),
      team: q('.d-team'),
      marker: q('.d-listen-marker'),
      close: q('#drawer-close'),
      state: q('.d-state'),
      stateTime: q('.d-state-time'),
      call: q('.d-call'),
      callTime: q('.d-call-time'),
      listen: q('#drawer-listen'),
      listenButtons: [...dialog.querySelectorAll('[data-listen-mode]')],
      error: q('.d-error'),
      window: q('.d-window'),
      timeline: q('#drawer-timeline'),
      noCall: q('.d-no-call'),
      transcript: q('#drawer-transcript'),
      transcriptEmpty: q('.d-transcript-empty'),
      alertsTitle: q('#d-alerts-h'),
      alerts: q('#drawer-alerts'),
      alertsEmpty: q('.d-alerts-empty'),
      history: q('#drawer-history'),
      historyEmpty: q('.d-history-empty'),
    };

    this.n.close.addEventListener('click', () => this.close());
    dialog.addEventListener('cancel', (ev) => { // Esc (the browser's own close request)
      ev.preventDefault();
      this.close();
    });
    dialog.addEventListener('keydown', (ev) => this.onKey(ev));
    dialog.addEventListener('click', (ev) => {
      if (ev.target === dialog) this.close(); // the backdrop beside the panel
      const ack = ev.target.closest?.('button.d-ack');
      if (ack) this.ack(ack.closest('[data-alert-id]').dataset.alertId);
    });
    for (const btn of this.n.listenButtons) {
      btn.addEventListener('click', () => {
        if (!this.agentId) return;
        btn.dispatchEvent(new CustomEvent('fw-listen', {
          bubbles: true,
          composed: true,
          detail: { agentId: this.agentId, mode: btn.dataset.listenMode },
        }));
      });
    }
    document.addEventListener('visibilitychange', () => {
      if (this.isOpen && !document.hidden) this.refresh();
    });
  }

  get isOpen() {
    return this.agentId !== null;
  }

  /** The signed-in user's permissions (from /api/me): which listen buttons to show. */
  setPermissions(list) {
    this.permissions = new Set(Array.isArray(list) ? list : []);
    this.renderListenButtons();
  }

  open(agentId, opener = null) {
    if (this.agentId === agentId && this.dialog.open) return;
    if (!this.isOpen) this.opener = opener || document.activeElement;
    this.agentId = agentId;
    this.call = undefined;
    this.callAlerts.clear();
    this.history = null;
    this.errors = { call: '', history: '' };
    this.transcriptRows.clear();
    this.n.transcript.replaceChildren();
    this.stateSeen = this.grid.record(agentId)?.state ?? null;
    this.callSeen = this.grid.record(agentId)?.call_id ?? null;
    this.dialog.dataset.agentId = agentId;
    this.renderAll();
    if (!this.dialog.open) this.dialog.showModal();
    this.n.close.focus();
    this.refresh();
  }

  close() {
    if (!this.isOpen) return;
    const agentId = this.agentId;
    this.agentId = null;
    clearTimeout(this.callTimer);
    clearTimeout(this.historyTimer);
    for (const c of Object.values(this.inflight)) c?.abort();
    this.inflight = { call: null, history: null };
    if (this.dialog.open) this.dialog.close();
    delete this.dialog.dataset.agentId;
    // Focus back where it was: the tile (which may have moved or been filtered out since).
    if (!this.grid.focusTile(agentId)) {
      const back = this.opener;
      if (back && back.isConnected && typeof back.focus === 'function') back.focus();
    }
    this.opener = null;
  }

  onKey(ev) {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      this.close();
      return;
    }
    if (ev.key !== 'Tab') return;
    // Keep Tab inside the drawer (the page behind is inert while it is modal; this also
    // stops focus leaving for the browser's own controls from the last field).
    const focusable = [...this.dialog.querySelectorAll('button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])')]
      .filter((n) => !n.hidden && n.offsetParent !== null && !n.closest('[hidden]'));
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (ev.shiftKey && document.activeElement === first) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && document.activeElement === last) {
      ev.preventDefault();
      first.focus();
    }
  }

  // -- live input from the page --

  /** A tile changed (called by the grid after it wrote the tile). */
  tileChanged(agentId, changed) {
    if (agentId !== this.agentId) return;
    const rec = this.grid.record(agentId);
    this.renderHead();
    if (!rec) return;
    if (rec.state !== this.stateSeen) {
      this.stateSeen = rec.state;
      this.scheduleHistory(300);
    }
    if ((rec.call_id ?? null) !== this.callSeen) {
      this.callSeen = rec.call_id ?? null;
      this.scheduleCall(200);
    }
    if (changed === null || changed.has('alert')) this.renderAlerts();
  }

  /** An alert arrived or changed (hub message, or our own acknowledgement). */
  alertChanged(alert) {
    if (!this.isOpen || alert.agent_id !== this.agentId) return;
    const id = String(alert.id);
    if (this.call && alert.call_id === this.call.call_id) {
      this.callAlerts.set(id, { ...this.callAlerts.get(id), ...alert });
      this.renderTimeline();
    }
    if (alert.acked_by) this.pending.delete(id);
    this.renderAlerts();
  }

  /** The alerts panel's unacked set or pending acks changed. */
  panelChanged() {
    if (this.isOpen) this.renderAlerts();
  }

  /** Once a second: the header's timers. */
  tick() {
    if (this.isOpen) this.renderTimes();
  }

  relabel() {
    if (!this.isOpen) return;
    this.transcriptRows.clear();
    this.n.transcript.replaceChildren();
    this.renderAll();
  }

  // -- fetching --

  refresh() {
    this.fetchCall();
    this.fetchHistory();
  }

  scheduleCall(ms) {
    clearTimeout(this.callTimer);
    if (this.isOpen) this.callTimer = setTimeout(() => this.fetchCall(), ms);
  }

  scheduleHistory(ms) {
    clearTimeout(this.historyTimer);
    if (this.isOpen) this.historyTimer = setTimeout(() => this.fetchHistory(), ms);
  }

  async getJson(kind, url) {
    this.inflight[kind]?.abort();
    const ctl = new AbortController();
    this.inflight[kind] = ctl;
    try {
      const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' }, signal: ctl.signal });
      if (res.status === 401) {
        this.onUnauthorized();
        return undefined;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return await res.json();
    } finally {
      if (this.inflight[kind] === ctl) this.inflight[kind] = null;
    }
  }

  async fetchCall() {
    const agentId = this.agentId;
    if (!agentId) return;
    clearTimeout(this.callTimer);
    try {
      const body = await this.getJson('call', `/api/agents/${encodeURIComponent(agentId)}/call?window_s=${WINDOW_S}`);
      if (body === undefined || agentId !== this.agentId) return;
      this.errors.call = '';
      this.setCall(body.call || null);
    } catch (err) {
      if (err?.name === 'AbortError' || agentId !== this.agentId) return;
      this.errors.call = err?.message || String(err);
      this.renderError();
    }
    if (agentId === this.agentId && !document.hidden) this.scheduleCall(CALL_POLL_MS);
  }

  async fetchHistory() {
    const agentId = this.agentId;
    if (!agentId) return;
    clearTimeout(this.historyTimer);
    try {
      const since = encodeURIComponent(startOfToday(this.clock.now()));
      const body = await this.getJson('history', `/api/agents/${encodeURIComponent(agentId)}/history?since=${since}`);
      if (body === undefined || agentId !== this.agentId) return;
      this.errors.history = '';
      this.history = body.history || [];
      this.renderHistory();
    } catch (err) {
      if (err?.name === 'AbortError' || agentId !== this.agentId) return;
      this.errors.history = err?.message || String(err);
    }
    this.renderError();
    if (agentId === this.agentId) this.scheduleHistory(HISTORY_POLL_MS);
  }

  setCall(call) {
    const sameCall = call && this.call && call.call_id === this.call.call_id;
    if (!sameCall) {
      this.callAlerts.clear();
      this.transcriptRows.clear();
      this.n.transcript.replaceChildren();
    }
    this.call = call;
    if (call) {
      // The hub's list, with anything newer we heard live (e.g. an ack a moment ago) kept.
      for (const a of call.alerts || []) {
        const id = String(a.id);
        const known = this.callAlerts.get(id);
        this.callAlerts.set(id, known && known.acked_by && !a.acked_by ? { ...a, acked_by: known.acked_by } : a);
      }
    }
    this.renderError();
    this.renderCall();
  }

  // -- acknowledging --

  async ack(id) {
    id = String(id);
    if (this.panel.get(id)) {
      this.panel.ack(id); // the panel shows pending and errors; we follow through panelChanged
      return;
    }
    const alert = this.callAlerts.get(id);
    if (!alert || alert.acked_by || this.pending.has(id)) return;
    this.pending.add(id);
    this.renderAlerts();
    try {
      const updated = await this.ackRequest(id);
      this.alertChanged({ ...alert, ...updated, acked_by: updated?.acked_by || 'me' });
    } catch (err) {
      this.errors.call = err?.message || String(err);
      this.renderError();
    } finally {
      this.pending.delete(id);
      this.renderAlerts();
    }
  }

  // -- rendering --

  renderAll() {
    this.renderHead();
    this.renderListenButtons();
    this.renderError();
    this.renderCall();
    this.renderHistory();
  }

  agentName() {
    const rec = this.grid.record(this.agentId);
    return rec?.name || this.agentId || '';
  }

  renderHead() {
    if (!this.isOpen) return;
    const rec = this.grid.record(this.agentId) || {};
    const name = this.agentName();
    this.n.title.textContent = name;
    this.n.team.textContent = rec.team || '';
    this.dialog.setAttribute('aria-label', t('drawer.label', { agent: name }));
    this.n.close.setAttribute('aria-label', t('drawer.close.aria', { agent: name }));
    this.n.state.textContent = stateLabel(rec.state || 'unknown');
    this.n.state.dataset.state = rec.state || 'unknown';
    const listeners = Array.isArray(rec.listeners) ? rec.listeners.filter((l) => l && LISTEN_MODES.includes(l.mode)) : [];
    this.n.marker.hidden = listeners.length === 0;
    this.n.marker.textContent = listeners.length
      ? t('drawer.listeners', { who: listeners.map((l) => t('listen.who', { user: l.user || '?', mode: t(`listen.mode.${l.mode}`) })).join(', ') })
      : '';
    this.n.listen.dataset.call = String(Boolean(rec.call_id));
    for (const btn of this.n.listenButtons) {
      btn.setAttribute('aria-label', t('listen.button.aria', { mode: t(`listen.button.${btn.dataset.listenMode}`), agent: name }));
    }
    this.renderTimes();
  }

  renderTimes() {
    const rec = this.grid.record(this.agentId) || {};
    const now = this.clock.now();
    this.n.stateTime.textContent = rec._stateSince !== null && rec._stateSince !== undefined ? fmtDuration(now - rec._stateSince) : '';
    const inCall = Boolean(rec.call_id) && rec._callStarted !== null && rec._callStarted !== undefined;
    this.n.call.textContent = rec.call_id ? t('drawer.call', { id: rec.call_id }) : '';
    this.n.callTime.textContent = inCall ? t('drawer.call_time', { duration: fmtDuration(now - rec._callStarted) }) : '';
  }

  renderListenButtons() {
    let any = false;
    for (const btn of this.n.listenButtons) {
      const allowed = this.permissions.has(btn.dataset.listenMode);
      btn.hidden = !allowed;
      any ||= allowed;
    }
    this.n.listen.hidden = !any;
  }

  renderError() {
    const error = this.errors.call || this.errors.history;
    this.n.error.hidden = !error;
    this.n.error.textContent = error ? t('drawer.error', { error }) : '';
  }

  renderCall() {
    const loading = this.call === undefined;
    const call = this.call || null;
    this.dialog.dataset.call = loading ? 'loading' : call ? 'true' : 'false';
    this.n.noCall.hidden = loading || Boolean(call);
    this.n.noCall.textContent = loading ? '' : t('drawer.no_call');
    this.n.window.textContent = call ? t('drawer.timeline.window', { duration: fmtSeconds(Math.min(WINDOW_S, Math.max(call.position_s - call.since_s, 0)), t) }) : '';
    this.renderTimeline();
    this.renderTranscript();
    this.renderAlerts();
  }

  renderTimeline() {
    const box = this.n.timeline;
    const call = this.call;
    if (!call) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    const m = timelineModel(call, [...this.callAlerts.values()]);
    const width = m.to - m.from || 1;
    const pct = (s) => `${(((s - m.from) / width) * 100).toFixed(3)}%`;
    const frag = document.createDocumentFragment();
    const tracks = {};
    for (const lane of LANES) {
      const row = el('div', 'd-lane');
      row.dataset.lane = lane;
      row.append(el('span', 'd-lane-label', t(`drawer.lane.${lane}`)));
      const track = el('div', 'd-track');
      row.append(track);
      tracks[lane] = track;
      frag.append(row);
    }
    const markRow = el('div', 'd-lane d-lane-marks');
    markRow.dataset.lane = 'alerts';
    markRow.append(el('span', 'd-lane-label', t('drawer.lane.alerts')));
    const markTrack = el('div', 'd-track');
    markRow.append(markTrack);
    frag.append(markRow);

    for (const s of m.spans) {
      const lane = s.kind === 'overlap' ? 'overtalk' : s.kind;
      const span = el('span', 'd-span');
      span.dataset.kind = s.kind;
      if (s.open) span.dataset.open = 'true';
      if (s.alertId) span.dataset.alertId = s.alertId;
      span.style.left = pct(s.start);
      span.style.width = `${Math.max(0, ((s.end - s.start) / width) * 100).toFixed(3)}%`;
      span.title = `${t(`drawer.lane.${lane}`)} ${fmtOffset(s.start)}–${s.open ? t('drawer.timeline.now') : fmtOffset(s.end)}`;
      tracks[lane].append(span);
    }
    for (const { alert, at } of m.marks) {
      const mark = el('span', 'd-mark');
      mark.dataset.alertId = String(alert.id);
      mark.dataset.severity = alert.severity || 'none';
      mark.dataset.kind = alert.kind;
      if (alert.acked_by) mark.dataset.acked = 'true';
      mark.style.left = pct(at);
      const detail = alertDetail(alert);
      mark.title = `${fmtOffset(at)} ${severityLabel(alert.severity)} ${kindLabel(alert.kind)}${detail ? ' — ' + detail : ''}`;
      markTrack.append(mark);
    }
    const axis = el('div', 'd-axis');
    axis.append(el('span', 'd-lane-label'));
    const axisTrack = el('div', 'd-track');
    for (const s of timelineTicks(m.from, m.to)) {
      const tick = el('span', 'd-tick', fmtOffset(s));
      tick.style.left = pct(s);
      axisTrack.append(tick);
    }
    axis.append(axisTrack);
    frag.append(axis);
    const body = el('div', 'd-timeline-body');
    body.append(frag);
    box.replaceChildren(body);
    box.setAttribute('aria-label', t('drawer.timeline.aria', {
      from: fmtOffset(m.from),
      to: fmtOffset(m.position),
      agent: fmtSeconds(m.totals.agent, t),
      customer: fmtSeconds(m.totals.customer, t),
      overtalk: m.totals.overtalk,
      dead: m.totals.dead_air,
      alerts: m.totals.alerts,
    }));
  }

  renderTranscript() {
    const list = this.n.transcript;
    const lines = this.call?.transcript || [];
    this.n.transcriptEmpty.hidden = !(this.call && lines.length === 0);
    list.hidden = !this.call;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    const keep = new Set();
    const counts = new Map();
    let cursor = list.firstElementChild;
    for (const line of lines) {
      const base = `${line.offset_s}|${line.speaker}|${line.text}`;
      const n = (counts.get(base) || 0) + 1;
      counts.set(base, n);
      const key = `${base}|${n}`;
      keep.add(key);
      let row = this.transcriptRows.get(key);
      if (!row) {
        row = this.transcriptLine(line);
        this.transcriptRows.set(key, row);
      }
      if (row === cursor) cursor = cursor.nextElementSibling;
      else list.insertBefore(row, cursor);
    }
    for (const [key, row] of this.transcriptRows) {
      if (!keep.has(key)) {
        row.remove();
        this.transcriptRows.delete(key);
      }
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  transcriptLine(line) {
    const li = el('li', 'd-line');
    li.dataset.speaker = line.speaker;
    const matches = Array.isArray(line.matches) ? line.matches : [];
    li.dataset.match = String(matches.length > 0);
    li.append(el('span', 'd-off', fmtOffset(line.offset_s)));
    li.append(el('span', 'd-who', tOr('who.', line.speaker)));
    const text = el('span', 'd-text');
    const source = String(line.text || '');
    const { ranges, missing } = highlightRanges(source, matches);
    let at = 0;
    for (const [start, end] of ranges) {
      if (start > at) text.append(source.slice(at, start));
      const mark = el('mark', 'd-hit', source.slice(start, end));
      mark.title = t('drawer.transcript.match', { phrase: source.slice(start, end) });
      text.append(mark);
      at = end;
    }
    if (at < source.length) text.append(source.slice(at));
    li.append(text);
    for (const phrase of missing) {
      // matched by the hub after normalising the text: named beside the line
      li.append(el('mark', 'd-hit d-hit-note', t('drawer.transcript.match', { phrase })));
    }
    return li;
  }

  alertsToShow() {
    if (this.call) {
      return [...this.callAlerts.values()].sort((a, b) => (parseTime(b.started_at) ?? 0) - (parseTime(a.started_at) ?? 0));
    }
    return this.isOpen ? this.panel.forAgent(this.agentId).sort((a, b) => (parseTime(b.started_at) ?? 0) - (parseTime(a.started_at) ?? 0)) : [];
  }

  renderAlerts() {
    if (!this.isOpen) return;
    const list = this.n.alerts;
    const alerts = this.call === undefined ? [] : this.alertsToShow();
    this.n.alertsTitle.textContent = t(this.call ? 'drawer.alerts' : 'drawer.alerts.agent');
    this.n.alertsEmpty.hidden = this.call === undefined || alerts.length > 0;
    const focusedId = document.activeElement?.closest?.('#drawer-alerts [data-alert-id]')?.dataset.alertId;
    const rows = [];
    for (const a of alerts) rows.push(this.alertRow(a));
    list.replaceChildren(...rows);
    if (focusedId) {
      // Keep the keyboard where it was: the same row's button, else the list.
      const again = list.querySelector(`[data-alert-id="${CSS.escape(focusedId)}"] button.d-ack`);
      if (again) again.focus();
      else this.n.close.focus();
    }
  }

  alertRow(a) {
    const id = String(a.id);
    const li = el('li', 'd-alert');
    li.dataset.alertId = id;
    li.dataset.severity = a.severity || 'none';
    li.dataset.kind = a.kind;
    li.dataset.acked = String(Boolean(a.acked_by));
    const line = el('div', 'a-line');
    const badge = el('span', 'sev-badge', severityLabel(a.severity));
    badge.dataset.sev = a.severity;
    line.append(badge, el('span', 'a-kind', kindLabel(a.kind)));
    const started = parseTime(a.started_at);
    line.append(el('span', 'a-time', started !== null ? fmtTimeOfDay(started) : ''));
    li.append(line);
    const meta = el('div', 'a-meta');
    if (a.offset_s !== null && a.offset_s !== undefined) meta.append(el('span', 'a-offset', t('alerts.at', { offset: fmtOffset(a.offset_s) })));
    if (a.duration_s !== null && a.duration_s !== undefined) meta.append(el('span', 'a-dur', t('alerts.lasted', { duration: fmtSeconds(a.duration_s, t) })));
    else if (ONGOING_KINDS.has(a.kind)) meta.append(el('span', 'a-dur', t('alerts.ongoing')));
    li.append(meta);
    const detail = alertDetail(a);
    if (detail) li.append(el('div', 'a-detail', detail));
    const actions = el('div', 'a-actions');
    if (a.acked_by) {
      actions.append(el('span', 'd-acked', t('drawer.acked_by', { user: a.acked_by })));
    } else {
      const pending = this.panel.pending.has(id) || this.pending.has(id);
      const btn = el('button', 'a-ack d-ack', pending ? t('alerts.acking') : t('alerts.ack'));
      btn.type = 'button';
      btn.setAttribute('aria-label', t('alerts.ack.aria', { severity: severityLabel(a.severity), kind: kindLabel(a.kind), agent: this.agentName() }));
      // aria-disabled, not disabled: a disabled button drops the keyboard focus
      if (pending) btn.setAttribute('aria-disabled', 'true');
      actions.append(btn);
      const error = this.panel.errors.get(id);
      if (error) actions.append(el('span', 'a-error', error));
    }
    li.append(actions);
    return li;
  }

  renderHistory() {
    const list = this.n.history;
    if (this.history === null) {
      list.replaceChildren();
      this.n.historyEmpty.hidden = true;
      return;
    }
    const rows = historyRows(this.history, this.clock.now());
    this.n.historyEmpty.hidden = rows.length > 0;
    list.replaceChildren(...rows.map((r) => {
      const li = el('li', 'd-hist');
      li.dataset.state = r.state;
      li.append(el('time', 'd-hist-at', fmtTimeOfDay(r.startMs)));
      const state = el('span', 'd-hist-state', stateLabel(r.state));
      state.dataset.state = r.state;
      li.append(state);
      li.append(el('span', 'd-hist-reason', r.state === 'break' && r.reason ? tOr('reason.', r.reason) : ''));
      li.append(el('span', 'd-hist-dur', r.current ? t('drawer.history.now') : t('drawer.history.for', { duration: fmtDuration(r.durationMs) })));
      return li;
    }));
  }
}
