// Alerts panel: unacknowledged alerts, newest first, grouped per call (per agent outside
// a call). Rows are keyed by alert id and kept between renders, so a keyboard user's
// focus survives new alerts arriving; an acknowledged alert is removed on every wall
// when the hub sends it back with `acked_by` set.

import { t } from './i18n.js';
import { fmtOffset, fmtSeconds, fmtTimeOfDay, parseTime } from './clock.js';
import { alertGroupKey, compareAlertsNewestFirst } from './model.js';
import { alertDetail, alertRuleLine, kindLabel, severityLabel } from './labels.js';

const MAX_ROWS = 200;
const ONGOING_KINDS = new Set(['silence', 'overtalk', 'state']);

export class AlertsPanel {
  /**
   * @param {object} o
   * @param {HTMLElement} o.list     container for the groups
   * @param {HTMLElement} o.empty    shown when there is nothing to acknowledge
   * @param {HTMLElement} o.more     "+N older" note
   * @param {(agentId: string) => string} o.agentName
   * @param {(id: string) => Promise<object>} o.ackRequest  POSTs the ack, resolves to the updated Alert
   * @param {() => void} o.onChange  after the set of unacked alerts changed
   * @param {(alert: object) => void} o.onRemoved  an alert left the unacked set (acknowledged)
   */
  constructor({ list, empty, more, agentName, ackRequest, onChange, onRemoved }) {
    this.list = list;
    this.emptyEl = empty;
    this.moreEl = more;
    this.agentName = agentName;
    this.ackRequest = ackRequest;
    this.onChange = onChange || (() => {});
    this.onRemoved = onRemoved || (() => {});
    this.alerts = new Map(); // id -> unacked Alert
    this.rows = new Map(); // id -> row view
    this.groups = new Map(); // group key -> group view
    this.pending = new Set(); // ids being acknowledged
    this.errors = new Map(); // id -> error text
    this.rafId = 0;

    list.addEventListener('click', (ev) => {
      const btn = ev.target.closest('button.a-ack');
      if (btn) this.ack(btn.closest('[data-alert-id]').dataset.alertId);
    });
  }

  get unackedCount() {
    return this.alerts.size;
  }

  replaceAll(alerts) {
    this.alerts.clear();
    for (const a of alerts || []) if (a && a.id !== undefined && !a.acked_by) this.alerts.set(String(a.id), a);
    this.changed();
  }

  /**
   * New or changed alert from the hub (or from our own ack).
   * Returns {isNew, removed} so the page can decide on a sound cue or an announcement.
   */
  upsert(alert) {
    const id = String(alert.id);
    const had = this.alerts.has(id);
    if (alert.acked_by) {
      this.pending.delete(id);
      this.errors.delete(id);
      if (had) {
        this.alerts.delete(id);
        this.changed();
        this.onRemoved(alert);
      }
      return { isNew: false, removed: had };
    }
    this.alerts.set(id, alert);
    this.changed();
    return { isNew: !had, removed: false };
  }

  /** Unacked alerts of one agent (to correct its tile right after an ack). */
  forAgent(agentId) {
    const out = [];
    for (const a of this.alerts.values()) if (a.agent_id === agentId) out.push(a);
    return out;
  }

  get(id) {
    return this.alerts.get(String(id));
  }

  /** The newest unacknowledged alert, or null. */
  newest() {
    let best = null;
    for (const a of this.alerts.values()) if (!best || compareAlertsNewestFirst(a, best) < 0) best = a;
    return best;
  }

  /** Id of the alert row holding keyboard focus, if any. */
  focusedId() {
    const row = document.activeElement?.closest?.('[data-alert-id]');
    return row && this.list.contains(row) ? row.dataset.alertId : null;
  }

  /** Move focus between alert rows (j/k). */
  moveFocus(step) {
    const rows = [...this.list.querySelectorAll('.alert-row')];
    if (!rows.length) return;
    const current = rows.findIndex((r) => r.contains(document.activeElement));
    const next = current < 0 ? 0 : Math.min(rows.length - 1, Math.max(0, current + step));
    rows[next].focus();
  }

  async ack(id) {
    id = String(id);
    if (!this.alerts.has(id) || this.pending.has(id)) return;
    this.pending.add(id);
    this.errors.delete(id);
    this.changed();
    try {
      const updated = await this.ackRequest(id);
      this.pending.delete(id);
      if (updated && updated.id !== undefined) {
        this.upsert({ ...updated, acked_by: updated.acked_by || 'me' });
      } else {
        this.upsert({ ...this.alerts.get(id), acked_by: 'me' });
      }
    } catch (err) {
      this.pending.delete(id);
      if (err && err.status === 404) {
        // Gone on the hub (purged or already handled): drop it here too.
        this.upsert({ ...this.alerts.get(id), acked_by: 'unknown' });
        return;
      }
      this.errors.set(id, t('alerts.ack_failed', { error: err?.message || String(err) }));
      this.changed();
    }
  }

  /** Language switch. */
  relabel() {
    for (const row of this.rows.values()) row.texts.clear();
    for (const g of this.groups.values()) g.texts.clear();
    this.changed(false);
  }

  changed(notify = true) {
    if (notify) this.onChange();
    if (!this.rafId) this.rafId = requestAnimationFrame(() => this.render());
  }

  render() {
    this.rafId = 0;
    const focusedId = this.focusedId();
    const focusedIndex = focusedId ? [...this.list.querySelectorAll('.alert-row')].findIndex((r) => r.dataset.alertId === focusedId) : -1;
    // Focus that came from the keyboard (j/k, Tab) follows the list when its row goes; focus a
    // mouse click left on an Ack button does not (see the end of render).
    const active = document.activeElement;
    const keyboardFocus = Boolean(focusedId) && active.matches(':focus-visible');
    const onButton = Boolean(focusedId) && active.matches('button.a-ack');

    const sorted = [...this.alerts.values()].sort(compareAlertsNewestFirst);
    const shown = sorted.slice(0, MAX_ROWS);
    const order = []; // [groupKey, [alerts]]
    const byKey = new Map();
    for (const a of shown) {
      const key = alertGroupKey(a);
      let bucket = byKey.get(key);
      if (!bucket) {
        bucket = [];
        byKey.set(key, bucket);
        order.push([key, bucket]);
      }
      bucket.push(a);
    }

    // Drop rows and groups that are gone.
    const shownIds = new Set(shown.map((a) => String(a.id)));
    for (const [id, row] of this.rows) {
      if (!shownIds.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    for (const [key, g] of this.groups) {
      if (!byKey.has(key)) {
        g.el.remove();
        this.groups.delete(key);
      }
    }

    // Create/update and put in order, moving only what is out of place.
    let gCursor = this.list.firstElementChild;
    for (const [key, bucket] of order) {
      let g = this.groups.get(key);
      if (!g) {
        g = makeGroup(key);
        this.groups.set(key, g);
      }
      renderGroup(g, bucket[0], bucket.length, this.agentName);
      if (gCursor === g.el) gCursor = g.el.nextElementSibling;
      else this.list.insertBefore(g.el, gCursor);

      let rCursor = g.listEl.firstElementChild;
      for (const a of bucket) {
        const id = String(a.id);
        let row = this.rows.get(id);
        if (!row) {
          row = makeRow(id);
          this.rows.set(id, row);
        }
        renderRow(row, a, this.agentName(a.agent_id), this.pending.has(id), this.errors.get(id) || '');
        if (rCursor === row.el) rCursor = row.el.nextElementSibling;
        else g.listEl.insertBefore(row.el, rCursor);
      }
    }

    this.emptyEl.hidden = this.alerts.size > 0;
    const hiddenCount = sorted.length - shown.length;
    this.moreEl.hidden = hiddenCount <= 0;
    if (hiddenCount > 0) this.moreEl.textContent = t('alerts.more', { n: hiddenCount });

    // Focus was on a row that went away (acknowledged). From the keyboard: on to the row now
    // in its place (the same control), so j/k/a/Enter carry on. From a mouse click: to the list
    // itself, so that `a` means "the newest alert" again rather than whichever row slid under
    // the pointer.
    if (focusedId && !this.rows.has(focusedId) && focusedIndex >= 0) {
      const rows = this.list.querySelectorAll('.alert-row');
      if (keyboardFocus && rows.length) {
        const row = rows[Math.min(focusedIndex, rows.length - 1)];
        (onButton ? row.querySelector('button.a-ack') : row).focus();
      } else {
        this.list.focus({ preventScroll: true });
      }
    }
  }
}

// ---- row and group views ------------------------------------------------------------

function setText(view, node, value) {
  if (view.texts.get(node) !== value) {
    view.texts.set(node, value);
    node.textContent = value;
  }
}

function makeGroup(key) {
  const el = document.createElement('section');
  el.className = 'alert-group';
  el.dataset.group = key;
  el.innerHTML = '<h3 class="g-head"><span class="g-agent"></span><span class="g-call"></span></h3><ul class="g-list"></ul>';
  return { el, agent: el.querySelector('.g-agent'), call: el.querySelector('.g-call'), listEl: el.querySelector('.g-list'), texts: new Map() };
}

function renderGroup(g, newest, count, agentName) {
  setText(g, g.agent, agentName(newest.agent_id));
  setText(g, g.call, newest.call_id ? t('alerts.call', { id: newest.call_id }) : t('alerts.no_call'));
  g.el.dataset.alertAgent = newest.agent_id;
  g.el.dataset.count = String(count);
}

function makeRow(id) {
  const el = document.createElement('li');
  el.className = 'alert-row';
  el.dataset.alertId = id;
  el.tabIndex = -1;
  el.innerHTML =
    '<div class="a-line"><span class="sev-badge"></span><span class="a-kind"></span><span class="a-time"></span></div>' +
    '<div class="a-meta"><span class="a-offset"></span><span class="a-dur"></span></div>' +
    '<div class="a-detail"></div><div class="a-rule"></div>' +
    '<div class="a-actions"><button type="button" class="a-ack"></button><span class="a-error" role="status"></span></div>';
  const q = (s) => el.querySelector(s);
  return {
    el, texts: new Map(),
    sev: q('.sev-badge'), kind: q('.a-kind'), time: q('.a-time'), offset: q('.a-offset'), dur: q('.a-dur'),
    detail: q('.a-detail'), rule: q('.a-rule'), btn: q('.a-ack'), error: q('.a-error'),
  };
}

function renderRow(row, a, agent, pending, error) {
  const el = row.el;
  if (el.dataset.severity !== a.severity) el.dataset.severity = a.severity;
  if (el.dataset.kind !== a.kind) el.dataset.kind = a.kind;
  el.dataset.alertAgent = a.agent_id;
  row.sev.dataset.sev = a.severity;
  setText(row, row.sev, severityLabel(a.severity));
  setText(row, row.kind, kindLabel(a.kind));
  const started = parseTime(a.started_at);
  setText(row, row.time, started !== null ? fmtTimeOfDay(started) : '');
  setText(row, row.offset, a.offset_s !== null && a.offset_s !== undefined ? t('alerts.at', { offset: fmtOffset(a.offset_s) }) : '');
  let dur = '';
  if (a.duration_s !== null && a.duration_s !== undefined) dur = t('alerts.lasted', { duration: fmtSeconds(a.duration_s, t) });
  else if (ONGOING_KINDS.has(a.kind)) dur = t('alerts.ongoing');
  setText(row, row.dur, dur);
  el.dataset.ongoing = String(a.duration_s === null && ONGOING_KINDS.has(a.kind));
  setText(row, row.detail, alertDetail(a));
  setText(row, row.rule, alertRuleLine(a));
  setText(row, row.btn, pending ? t('alerts.acking') : t('alerts.ack'));
  const aria = t('alerts.ack.aria', { severity: severityLabel(a.severity), kind: kindLabel(a.kind), agent });
  if (row.btn.getAttribute('aria-label') !== aria) row.btn.setAttribute('aria-label', aria);
  // aria-disabled, not disabled: disabling the focused button would drop the focus to <body>
  // (and a click on it while pending is ignored by ack()).
  if (pending) row.btn.setAttribute('aria-disabled', 'true');
  else row.btn.removeAttribute('aria-disabled');
  setText(row, row.error, error);
}
