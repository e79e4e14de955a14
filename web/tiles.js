// The tile grid: one element per agent, kept in a Map and patched in place.
//
// Hub messages only queue work (enqueueSnapshot / enqueuePatches); all DOM writes happen in
// requestAnimationFrame callbacks (flush), and every write is skipped when the text or
// attribute already has that value. With a big floor the work is spread over frames:
//
// * patches: a batch from the hub is applied over a few frames (SPREAD_FRAMES), at most
//   BUDGET_MAX tiles a frame (new tiles, alerts, severity, connection and listener changes
//   first, unbudgeted). Patches for a tile that waits are merged, so the backlog never grows
//   past one patch per tile. Few frames rather than many: each frame also has a fixed cost
//   (compositing update, commit, raster) that is paid again for every frame with changes.
// * timers (time in state, call time, dead air): each tile's texts change at its own second
//   boundaries, so each tile is ticked when its next text is due, not all in one frame a second.
// * placement: tiles have one fixed size and are absolutely placed; a sort (at most once a
//   second) or a filter moves tiles with a transform, never by moving DOM nodes.
//
// Keyboard: the grid is one tab stop (roving tabindex); arrow keys, Home and End move between
// tiles in screen order, Enter or Space opens the agent's drawer (onOpen).

import { getLang, t, tOr } from './i18n.js';
import { fmtDuration } from './clock.js';
import {
  STATES, ORDER_FIELDS, ageLevel, comparatorFor, computeLayout, makeCollator, matchesFilter, mergeTile,
} from './model.js';
import {
  alertDetail, kindLabel, severityLabel, severityShortLabel, stateLabel, stateShortLabel,
} from './labels.js';

const SORT_INTERVAL_MS = 1000;
const SUMMARY_INTERVAL_MS = 250;
// Fields whose change shows at once, whatever the backlog.
const URGENT_FIELDS = ['alert', 'severity', 'connected', 'listeners'];
const SPREAD_FRAMES = 6;
const BUDGET_MIN = 24;
const BUDGET_MAX = 120;
const TICK_BUDGET = 60; // timer updates per frame at most (an aligned burst spreads over frames)
// Due timers are written in frames on a 100 ms grid: ~1/10 of the tiles per frame rather than
// all in one frame a second, and not a frame for every few tiles either (each frame has a fixed
// cost: layerize, commit, raster). A timer shows its new second at most 100 ms late.
const TIMER_SLOT_MS = 100;
const TIMER_EARLY_MS = 4; // timer callbacks come a little early or late
const LISTEN_RANK = { listen: 1, whisper: 2, barge: 3 };

/** Replace an element's text, reusing its Text node (cheaper for layout than textContent). */
function setNodeText(node, value) {
  const first = node.firstChild;
  if (first && first.nodeType === 3 && !first.nextSibling) first.data = value;
  else node.textContent = value;
}

// ---- one tile ------------------------------------------------------------------

let prototypeTile = null;

function buildPrototype() {
  const el = document.createElement('article');
  el.className = 'tile';
  el.setAttribute('role', 'listitem');
  el.tabIndex = -1;
  el.setAttribute('aria-describedby', 'tile-hint');
  el.innerHTML = `
<div class="r r-head"><span class="t-name"></span><span class="t-team"></span><span class="t-flags"><span class="t-flag t-listen"><span class="long"></span><span class="short"></span></span><span class="t-flag t-sev-mini"></span><span class="t-flag t-disc"><span class="long"></span><span class="short"></span></span></span></div>
<div class="r r-state"><span class="t-state"><span class="long"></span><span class="short"></span></span><span class="t-reason"></span><span class="t-time t-state-time"></span></div>
<div class="r r-dead"><span class="t-dead-label"></span><span class="t-time t-dead-time"></span></div>
<div class="r r-call"><span class="t-dir"></span><span class="t-time t-call-time"></span><span class="t-ot"><span class="long"></span><span class="short"></span></span></div><div class="r r-talk"><span class="t-spk" role="img" data-who="agent" data-on="false"></span><span class="t-ratio" data-empty="true"><span class="bar" aria-hidden="true"></span><span class="pct"></span></span><span class="t-spk" role="img" data-who="customer" data-on="false"></span></div>
<div class="r r-alert"><span class="sev-badge"></span><span class="t-alert-kind"></span></div>
<div class="r r-detail"><span class="t-alert-detail"></span></div>`.replace(/\n/g, '');
  return el;
}

class TileView {
  constructor(agentId) {
    prototypeTile ??= buildPrototype();
    const el = prototypeTile.cloneNode(true);
    el.dataset.agentId = agentId;
    this.el = el;
    const q = (sel) => el.querySelector(sel);
    this.n = {
      listenLong: q('.t-listen .long'),
      listenShort: q('.t-listen .short'),
      name: q('.t-name'),
      team: q('.t-team'),
      sevMini: q('.t-sev-mini'),
      discLong: q('.t-disc .long'),
      discShort: q('.t-disc .short'),
      stateLong: q('.t-state .long'),
      stateShort: q('.t-state .short'),
      reason: q('.t-reason'),
      stateTime: q('.t-state-time'),
      deadLabel: q('.t-dead-label'),
      deadTime: q('.t-dead-time'),
      dir: q('.t-dir'),
      callTime: q('.t-call-time'),
      spkAgent: q('.t-spk[data-who="agent"]'),
      spkCustomer: q('.t-spk[data-who="customer"]'),
      ratio: q('.t-ratio'),
      bar: q('.t-ratio .bar'),
      pct: q('.t-ratio .pct'),
      otLong: q('.t-ot .long'),
      otShort: q('.t-ot .short'),
      sevBadge: q('.sev-badge'),
      alertKind: q('.t-alert-kind'),
      alertDetail: q('.t-alert-detail'),
    };
    this.texts = new Map(); // node -> last text written
    this.attrs = new Map(); // node -> {attribute name: last value written}
    this.hidden = false;
    this.pos = -1; // slot on screen (index in the shown order), -1 before the first placement
    this.xy = ''; // last transform written
    this.nextAt = Infinity; // hub time at which a timer text changes next
  }

  /** Forget what was written, so the next render writes everything (language switch). */
  reset() {
    this.texts.clear();
    this.attrs.clear();
  }

  text(node, value) {
    if (this.texts.get(node) !== value) {
      this.texts.set(node, value);
      setNodeText(node, value);
    }
  }

  /** Timer text: also records its length, which fixes the box width (see .t-time in style.css). */
  time(node, value) {
    const before = this.texts.get(node);
    if (before === value) return;
    if (before === undefined || before.length !== value.length) node.dataset.len = String(value.length);
    this.texts.set(node, value);
    setNodeText(node, value);
  }

  attr(node, name, value) {
    let c = this.attrs.get(node);
    if (!c) {
      c = {};
      this.attrs.set(node, c);
    }
    if (c[name] !== value) {
      c[name] = value;
      node.setAttribute(name, value);
    }
  }

  /**
   * Write what does not depend on the clock. `changed` is the set of tile fields that
   * changed (from mergeTile), or null to write everything (new tile, snapshot, language).
   */
  render(rec, changed = null) {
    const n = this.n;
    const el = this.el;
    const all = changed === null;
    const has = (...fields) => all || fields.some((f) => changed.has(f));
    // In a call: the hub names the call, or the state says so (a tile may carry the
    // live speech fields before the call's id reaches it).
    const inCall = Boolean(rec.call_id) || rec.state === 'on_call' || rec.state === 'hold';

    if (all) {
      this.text(n.discLong, t('tile.disconnected'));
      this.text(n.discShort, t('tile.disconnected.short'));
      this.text(n.deadLabel, t('tile.dead_air'));
      this.text(n.spkAgent, t('who.agent.short'));
      this.text(n.spkCustomer, t('who.customer.short'));
    }
    if (has('name', 'team', 'agent_id')) {
      const name = rec.name || rec.agent_id;
      this.text(n.name, name);
      this.text(n.team, rec.team || '');
      this.attr(el, 'title', `${name} · ${rec.agent_id}${rec.team ? ' · ' + rec.team : ''}`);
    }
    if (has('state', 'reason')) {
      const state = rec.state || 'unknown';
      this.attr(el, 'data-state', state);
      this.text(n.stateLong, stateLabel(state));
      this.text(n.stateShort, stateShortLabel(state));
      this.text(n.reason, state === 'break' && rec.reason ? tOr('reason.', rec.reason) : '');
    }
    if (has('severity')) {
      this.attr(el, 'data-severity', rec.severity || 'none');
      this.text(n.sevMini, severityShortLabel(rec.severity));
    }
    if (has('listeners')) this.renderListeners(rec.listeners);
    if (has('connected')) this.attr(el, 'data-connected', rec.connected === false ? 'false' : 'true');
    if (has('dead_air_since')) this.attr(el, 'data-dead-air', rec._deadAirSince !== null ? 'true' : 'false');
    if (has('call_id', 'direction', 'state')) {
      this.attr(el, 'data-call', inCall ? 'true' : 'false');
      if (inCall) this.text(n.dir, rec.direction ? t(rec.direction === 'outbound' ? 'tile.outbound' : 'tile.inbound') : t('tile.call'));
    }
    if (inCall && has('call_id', 'state', 'agent_speaking')) {
      this.attr(n.spkAgent, 'data-on', rec.agent_speaking ? 'true' : 'false');
      this.attr(n.spkAgent, 'aria-label', t(rec.agent_speaking ? 'tile.speaking' : 'tile.silent', { who: t('who.agent') }));
    }
    if (inCall && has('call_id', 'state', 'customer_speaking')) {
      this.attr(n.spkCustomer, 'data-on', rec.customer_speaking ? 'true' : 'false');
      this.attr(n.spkCustomer, 'aria-label', t(rec.customer_speaking ? 'tile.speaking' : 'tile.silent', { who: t('who.customer') }));
    }
    if (inCall && has('call_id', 'state', 'talk_ratio')) {
      const ratio = typeof rec.talk_ratio === 'number' ? Math.min(1, Math.max(0, rec.talk_ratio)) : null;
      this.attr(n.ratio, 'data-empty', ratio === null ? 'true' : 'false');
      if (ratio === null) {
        this.text(n.pct, '');
        this.attr(n.ratio, 'title', t('tile.talk_ratio.none'));
      } else {
        const pct = Math.round(ratio * 100);
        const value = ratio.toFixed(2);
        if (this.texts.get(n.bar) !== value) {
          this.texts.set(n.bar, value);
          n.bar.style.setProperty('--ratio', value); // CSSOM, not a style attribute: fine under a strict CSP
        }
        this.text(n.pct, `${pct}%`);
        this.attr(n.ratio, 'title', t('tile.talk_ratio.title', { pct }));
      }
    }
    if (inCall && has('call_id', 'state', 'overtalk_count')) {
      const ot = rec.overtalk_count || 0;
      this.text(n.otLong, ot ? t('tile.overtalk', { n: ot }) : '');
      this.text(n.otShort, ot ? t('tile.overtalk.short', { n: ot }) : '');
    }
    if (has('alert')) {
      const alert = rec.alert || null;
      this.attr(el, 'data-has-alert', alert ? 'true' : 'false');
      if (alert) {
        this.attr(n.sevBadge, 'data-sev', alert.severity || 'none');
        this.text(n.sevBadge, severityLabel(alert.severity));
        this.text(n.alertKind, kindLabel(alert.kind));
        this.text(n.alertDetail, alertDetail(alert));
      }
    }
  }

  /** "A supervisor is listening" marker: the most intrusive mode shown, everyone in the title. */
  renderListeners(listeners) {
    const list = Array.isArray(listeners) ? listeners.filter((l) => l && LISTEN_RANK[l.mode]) : [];
    let mode = 'none';
    for (const l of list) if (mode === 'none' || LISTEN_RANK[l.mode] > LISTEN_RANK[mode]) mode = l.mode;
    this.attr(this.el, 'data-listen', mode);
    if (mode === 'none') return;
    this.text(this.n.listenLong, t(`listen.marker.${mode}`));
    this.text(this.n.listenShort, t(`listen.marker.${mode}.short`));
    const who = list.map((l) => t('listen.who', { user: l.user || '?', mode: t(`listen.mode.${l.mode}`) })).join(', ');
    this.attr(this.n.listenLong.parentNode, 'title', who);
  }

  /**
   * Write the clock-driven parts (timers, the time-in-state colour step) and remember when the
   * next of them changes: each timer text changes on its own second boundary.
   */
  tick(rec, now) {
    const n = this.n;
    let next = Infinity;
    const due = (since) => {
      const at = since + (Math.floor(Math.max(0, now - since) / 1000) + 1) * 1000;
      if (at < next) next = at;
    };
    if (rec._stateSince !== null) {
      const ms = now - rec._stateSince;
      this.time(n.stateTime, fmtDuration(ms));
      this.attr(this.el, 'data-age', String(ageLevel(ms)));
      due(rec._stateSince);
    } else {
      this.time(n.stateTime, '');
      this.attr(this.el, 'data-age', '0');
    }
    if (rec._callStarted !== null) {
      this.time(n.callTime, fmtDuration(now - rec._callStarted));
      due(rec._callStarted);
    } else {
      this.time(n.callTime, '');
    }
    if (rec._deadAirSince !== null) {
      this.time(n.deadTime, fmtDuration(now - rec._deadAirSince));
      due(rec._deadAirSince);
    }
    this.nextAt = next;
  }
}

// ---- the grid ------------------------------------------------------------------

export class TileGrid {
  /**
   * @param {object} o
   * @param {HTMLElement} o.grid      element that holds the tiles (role=list)
   * @param {HTMLElement} o.area      element whose size the tiles fill (scrolls if needed)
   * @param {{now(): number}} o.clock hub clock
   * @param {(summary) => void} o.onSummary  counts per state, shown/total, teams
   * @param {(agentId: string, tileEl: HTMLElement) => void} [o.onOpen]  a tile was clicked or
   *   Enter/Space pressed on it
   * @param {(agentId: string, changed: Set<string>) => void} [o.onTileChange]  a tile's record
   *   changed (after the DOM write)
   */
  constructor({ grid, area, clock, onSummary, onOpen, onTileChange }) {
    this.grid = grid;
    this.area = area;
    this.clock = clock;
    this.onSummary = onSummary || (() => {});
    this.onOpen = onOpen || (() => {});
    this.onTileChange = onTileChange || (() => {});
    this.records = new Map();
    this.views = new Map();
    this.pendingSnapshot = null;
    this.pendingPatches = new Map(); // agent id -> merged patch, oldest first
    this.urgentPatches = new Map();
    this.pendingRemoved = new Set();
    this.rafId = 0;
    this.wakeTimer = 0;
    this.wakeAt = Infinity;
    this.sortKey = 'risk';
    this.filter = { team: '', state: '', text: '' };
    this.collator = makeCollator(getLang());
    this.orderDirty = false;
    this.placeNow = false; // a user's action or a new tile: place without waiting for the sort gate
    this.lastSortAt = -Infinity;
    this.summaryDirty = true;
    this.summaryNow = true;
    this.lastSummaryAt = -Infinity;
    this.layoutDirty = true;
    this.L = null;
    this.shown = []; // agent ids on screen, in screen order
    this.activeId = null; // the tile that holds the grid's tab stop
    this.onScreen = new Set(); // tiles in view; only tracked while the grid scrolls
    this.scrolling = false;
    this.layoutOpts = { gap: 6, maxFs: 32 };
    this.budget = BUDGET_MIN;
    this.hadBacklog = false;
    this.stats = { flushes: 0, patches: 0, applied: 0, moves: 0, ticks: 0, lastFlushMs: 0, backlog: 0, budget: this.budget };

    this.io = new IntersectionObserver((entries) => {
      const now = this.clock.now();
      for (const e of entries) {
        const id = e.target.dataset.agentId;
        if (e.isIntersecting) {
          this.onScreen.add(id);
          const rec = this.records.get(id);
          if (rec) this.views.get(id)?.tick(rec, now); // catch up at once when scrolled into view
        } else {
          this.onScreen.delete(id);
        }
      }
    }, { root: area });

    this.ro = new ResizeObserver(() => { this.layoutDirty = true; this.schedule(); });
    this.ro.observe(area);

    grid.addEventListener('click', (ev) => {
      const el = ev.target.closest?.('.tile[data-agent-id]');
      if (!el || !grid.contains(el)) return;
      this.setActive(el.dataset.agentId, false);
      this.onOpen(el.dataset.agentId, el);
    });
    grid.addEventListener('keydown', (ev) => this.onKey(ev));
  }

  // -- input (called from socket handlers; never touches the DOM) --

  enqueueSnapshot(tiles) {
    this.pendingSnapshot = tiles;
    this.pendingPatches.clear();
    this.urgentPatches.clear();
    this.pendingRemoved.clear();
    this.schedule();
  }

  enqueuePatches(patches, removed) {
    for (const p of patches || []) {
      if (!p || !p.agent_id) continue;
      const id = p.agent_id;
      this.pendingRemoved.delete(id);
      let queue = this.pendingPatches;
      if (this.urgentPatches.has(id) || !this.records.has(id) || URGENT_FIELDS.some((f) => f in p)) {
        // A new tile or an alert: not held back by the budget. A patch already waiting for
        // this tile goes with it, so the order of changes is kept.
        queue = this.urgentPatches;
        const waiting = this.pendingPatches.get(id);
        if (waiting) {
          this.pendingPatches.delete(id);
          this.urgentPatches.set(id, Object.assign(this.urgentPatches.get(id) || {}, waiting));
        }
      }
      const prev = queue.get(id);
      queue.set(id, prev ? Object.assign(prev, p) : { ...p });
    }
    for (const id of removed || []) {
      this.pendingPatches.delete(id);
      this.urgentPatches.delete(id);
      this.pendingRemoved.add(id);
    }
    this.stats.patches += (patches || []).length;
    this.schedule();
  }

  /** Local change (e.g. an alert acknowledged here): merge like a patch. */
  patchLocal(agentId, patch) {
    if (this.records.has(agentId)) this.enqueuePatches([{ agent_id: agentId, ...patch }], []);
  }

  setSort(key) {
    if (key === this.sortKey) return;
    this.sortKey = key;
    this.placeNow = true; // a user's choice applies at once
    this.orderDirty = true;
    this.schedule();
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    for (const [id, rec] of this.records) this.applyFilter(id, rec);
    this.placeNow = true;
    this.orderDirty = true;
    this.layoutDirty = true;
    this.summaryDirty = true;
    this.summaryNow = true;
    this.schedule();
  }

  setLayoutOptions(opts) {
    this.layoutOpts = { ...this.layoutOpts, ...opts };
    this.layoutDirty = true;
    this.schedule();
  }

  /** Language switch: rewrite every label. */
  relabel() {
    this.collator = makeCollator(getLang());
    const now = this.clock.now();
    for (const [id, view] of this.views) {
      const rec = this.records.get(id);
      view.reset();
      view.render(rec);
      view.tick(rec, now);
    }
    this.orderDirty = true;
    this.placeNow = true;
    this.summaryDirty = true;
    this.summaryNow = true;
    this.schedule();
  }

  get size() {
    return this.records.size;
  }

  record(agentId) {
    return this.records.get(agentId);
  }

  tileElement(agentId) {
    return this.views.get(agentId)?.el || null;
  }

  /** Put keyboard focus on a tile (e.g. when the agent drawer closes). */
  focusTile(agentId) {
    const view = this.views.get(agentId);
    if (!view || view.hidden) return false;
    this.setActive(agentId, true);
    return true;
  }

  // -- output --

  schedule() {
    if (!this.rafId) this.rafId = requestAnimationFrame(() => this.flush());
  }

  /** Schedule a frame at hub time `at` (the next timer due), unless one comes sooner. */
  wake(at) {
    if (at >= this.wakeAt || !Number.isFinite(at)) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = 0;
      this.wakeAt = Infinity;
      this.schedule();
    }, Math.max(0, at - this.clock.now()));
  }

  flush() {
    this.rafId = 0;
    const t0 = performance.now();
    const now = this.clock.now();
    this.stats.flushes++;
    this.setBudget();

    if (this.pendingSnapshot) {
      this.replaceAll(this.pendingSnapshot, now);
      this.pendingSnapshot = null;
    }
    for (const id of this.pendingRemoved) this.removeTile(id);
    this.pendingRemoved.clear();

    for (const [id, patch] of this.urgentPatches) this.apply(id, patch, now);
    this.urgentPatches.clear();
    let left = this.budget;
    for (const [id, patch] of this.pendingPatches) {
      if (left-- <= 0) break;
      this.pendingPatches.delete(id);
      this.apply(id, patch, now);
    }
    this.hadBacklog = this.pendingPatches.size > 0;
    this.stats.backlog = this.pendingPatches.size;

    if (this.layoutDirty) this.layout();
    if (this.orderDirty || this.placeNow) this.maybeSort();
    const nextTimer = this.tickDue(now);
    if (this.summaryDirty) {
      // Data changes update the header counts at most 4 times a second; a new floor, a new or
      // removed tile or the user's own filter at once.
      const wait = this.summaryNow ? 0 : this.lastSummaryAt + SUMMARY_INTERVAL_MS - t0;
      if (wait <= 0) this.summarise(t0);
      else this.wake(now + wait);
    }
    if (this.hadBacklog || this.pendingSnapshot) this.schedule();
    else this.wake(Math.ceil(nextTimer / TIMER_SLOT_MS) * TIMER_SLOT_MS);
    this.stats.lastFlushMs = performance.now() - t0;
  }

  /**
   * Patches this frame: the queue spread over SPREAD_FRAMES frames, within [BUDGET_MIN,
   * BUDGET_MAX]. Kept while the queue drains (a batch goes out in equal parts), raised when
   * a new batch makes the queue longer.
   */
  setBudget() {
    const want = Math.min(BUDGET_MAX, Math.max(BUDGET_MIN, Math.ceil(this.pendingPatches.size / SPREAD_FRAMES)));
    if (!this.hadBacklog || want > this.budget) this.budget = want;
    this.stats.budget = this.budget;
  }

  apply(id, patch, now) {
    let rec = this.records.get(id);
    let view = this.views.get(id);
    const isNew = !rec;
    if (isNew) {
      rec = {};
      view = this.addTile(id, rec);
    }
    const changed = mergeTile(rec, patch);
    this.stats.applied++;
    if (changed.size === 0) return;
    view.render(rec, isNew ? null : changed);
    if (isNew || changed.has('state_since') || changed.has('call_started_at') || changed.has('dead_air_since')) view.tick(rec, now);
    for (const f of changed) {
      if (ORDER_FIELDS.has(f)) {
        this.orderDirty = true;
        this.summaryDirty = true;
        this.applyFilter(id, rec);
        break;
      }
    }
    this.onTileChange(id, changed);
  }

  /** Tick the tiles whose timer text is due, at most TICK_BUDGET a frame. Returns the next due time. */
  tickDue(now) {
    let next = Infinity;
    let left = TICK_BUDGET;
    for (const [id, view] of this.views) {
      if (view.hidden || (this.scrolling && !this.onScreen.has(id))) continue;
      if (view.nextAt <= now + TIMER_EARLY_MS && left > 0) {
        left--;
        this.stats.ticks++;
        view.tick(this.records.get(id), Math.max(now, view.nextAt));
      }
      if (view.nextAt < next) next = view.nextAt;
    }
    return next;
  }

  replaceAll(tiles, now) {
    const keep = new Set();
    for (const tile of tiles) {
      if (!tile || !tile.agent_id) continue;
      keep.add(tile.agent_id);
      const rec = {};
      mergeTile(rec, tile);
      let view = this.views.get(tile.agent_id);
      if (view) {
        this.records.set(tile.agent_id, rec);
        view.reset();
      } else {
        view = this.addTile(tile.agent_id, rec);
      }
      view.render(rec);
      view.tick(rec, now);
      this.applyFilter(tile.agent_id, rec);
      this.onTileChange(tile.agent_id, null);
    }
    for (const id of [...this.records.keys()]) if (!keep.has(id)) this.removeTile(id);
    this.orderDirty = true;
    this.placeNow = true;
    this.summaryDirty = true;
    this.summaryNow = true;
    this.layoutDirty = true;
  }

  addTile(id, rec) {
    const view = new TileView(id);
    this.records.set(id, rec);
    this.views.set(id, view);
    this.grid.appendChild(view.el);
    if (this.scrolling) this.io.observe(view.el);
    this.orderDirty = true;
    this.placeNow = true; // a new tile gets its slot in this frame
    this.layoutDirty = true;
    this.summaryDirty = true;
    this.summaryNow = true;
    return view;
  }

  removeTile(id) {
    const view = this.views.get(id);
    if (!view) return;
    const hadFocus = view.el.contains(document.activeElement);
    this.io.unobserve(view.el);
    view.el.remove();
    this.views.delete(id);
    this.records.delete(id);
    this.onScreen.delete(id);
    this.layoutDirty = true;
    this.summaryDirty = true;
    this.summaryNow = true;
    this.orderDirty = true;
    this.placeNow = true;
    if (this.activeId === id) {
      this.activeId = null;
      this.refocus = hadFocus; // the next placement gives the focus to the tile now first
    }
  }

  applyFilter(id, rec) {
    const view = this.views.get(id);
    if (!view) return;
    const hide = !matchesFilter(rec, this.filter);
    if (hide !== view.hidden) {
      if (hide && view.el.contains(document.activeElement)) this.refocus = true;
      view.hidden = hide;
      view.el.hidden = hide;
      this.layoutDirty = true;
      this.orderDirty = true;
      this.placeNow = true; // shown or hidden at once: the others close up
    }
  }

  layout() {
    this.layoutDirty = false;
    let shown = 0;
    for (const v of this.views.values()) if (!v.hidden) shown++;
    const style = getComputedStyle(this.area);
    const w = this.area.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const h = this.area.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    const L = computeLayout(w, h, shown, this.layoutOpts);
    L.gap = this.layoutOpts.gap;
    L.tileW = Math.floor(L.tileW * 10) / 10;
    const key = `${L.cols}|${L.tileW}|${L.tileH}|${L.fs}|${L.density}|${L.scroll}|${L.gap}`;
    if (key === this.layoutKey) return;
    this.layoutKey = key;
    this.L = L;
    const gs = this.grid.style;
    gs.setProperty('--tile-w', `${L.tileW}px`);
    gs.setProperty('--tile-h', `${L.tileH}px`);
    gs.setProperty('--fs', `${L.fs}px`);
    this.grid.dataset.density = L.density;
    this.grid.dataset.cols = String(L.cols);
    this.grid.dataset.scroll = String(L.scroll);
    if (L.scroll !== this.scrolling) {
      // Every tile is on screen unless the grid scrolls: only then is visibility tracked.
      this.scrolling = L.scroll;
      this.onScreen.clear();
      this.io.disconnect();
      if (L.scroll) for (const v of this.views.values()) this.io.observe(v.el);
    }
    for (const v of this.views.values()) v.xy = ''; // every slot moved
    this.placeNow = true;
    this.summaryDirty = true;
  }

  maybeSort() {
    const t = performance.now();
    if (!this.placeNow) {
      const wait = this.lastSortAt + SORT_INTERVAL_MS - t;
      if (wait > 0) {
        this.wake(this.clock.now() + wait);
        return;
      }
    }
    this.lastSortAt = t;
    this.orderDirty = false;
    this.placeNow = false;
    const recs = [...this.records.values()].sort(comparatorFor(this.sortKey, this.collator));
    this.place(recs);
  }

  /** Give every shown tile its slot in `recs` order: a transform, and its position for assistive tech. */
  place(recs) {
    const L = this.L;
    if (!L) return;
    const shown = [];
    for (const rec of recs) {
      const view = this.views.get(rec.agent_id);
      if (!view || view.hidden) continue;
      const i = shown.length;
      shown.push(rec.agent_id);
      if (view.pos === i && view.xy) continue;
      const x = (i % L.cols) * (L.tileW + L.gap);
      const y = Math.floor(i / L.cols) * (L.tileH + L.gap);
      const xy = `${Math.round(x)}px ${y}px`;
      if (view.xy !== xy) {
        // left/top rather than a transform: 500 transform nodes make every frame's
        // compositing update (layerize, commit) dear with software rendering.
        // CSSOM, not a style attribute: fine under a strict CSP.
        view.xy = xy;
        view.el.style.left = `${Math.round(x)}px`;
        view.el.style.top = `${y}px`;
        this.stats.moves++;
      }
      if (view.pos !== i) {
        view.pos = i;
        view.el.setAttribute('aria-posinset', String(i + 1));
      }
    }
    const count = String(shown.length);
    if (this.grid.dataset.count !== count) {
      this.grid.dataset.count = count;
      for (const id of shown) this.views.get(id).el.setAttribute('aria-setsize', count);
    }
    this.shown = shown;
    if (!this.activeId || !shown.includes(this.activeId)) {
      this.setActive(shown[0] || null, this.refocus);
    }
    this.refocus = false;
  }

  // -- keyboard: one tab stop for the grid, arrows move in screen order --

  setActive(agentId, focus) {
    if (this.activeId !== agentId) {
      const before = this.views.get(this.activeId);
      if (before) before.el.tabIndex = -1;
      this.activeId = agentId;
    }
    const view = this.views.get(agentId);
    if (!view) return;
    view.el.tabIndex = 0;
    if (focus) view.el.focus({ preventScroll: false });
  }

  onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const el = ev.target.closest?.('.tile[data-agent-id]');
    if (!el) return;
    const id = el.dataset.agentId;
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      ev.stopPropagation();
      this.onOpen(id, el);
      return;
    }
    const cols = this.L?.cols || 1;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
    const i = this.shown.indexOf(id);
    let next = null;
    if (ev.key in moves) next = i + moves[ev.key];
    else if (ev.key === 'Home') next = 0;
    else if (ev.key === 'End') next = this.shown.length - 1;
    else return;
    ev.preventDefault();
    next = Math.max(0, Math.min(this.shown.length - 1, next));
    if (this.shown[next]) this.setActive(this.shown[next], true);
  }

  summarise(t = performance.now()) {
    this.summaryDirty = false;
    this.summaryNow = false;
    this.lastSummaryAt = t;
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    const teams = new Set();
    let disconnected = 0;
    let shown = 0;
    for (const [id, rec] of this.records) {
      if (rec.state in counts) counts[rec.state]++;
      if (rec.connected === false) disconnected++;
      if (rec.team) teams.add(rec.team);
      if (!this.views.get(id).hidden) shown++;
    }
    this.onSummary({ counts, disconnected, total: this.records.size, shown, teams: [...teams] });
  }

  /**
   * Timers are ticked per tile when due (see flush); the page still calls this once a second as
   * a safety net (a hub clock that jumped, a timer missed while the tab was hidden).
   */
  tick() {
    this.schedule();
  }
}
