// The tile grid: one element per agent, kept in a Map and patched in place.
//
// Hub messages only queue work (enqueueSnapshot / enqueuePatches). All DOM writes happen
// in one requestAnimationFrame callback (flush), and every write is skipped when the text
// or attribute already has that value. Timers (time in state, call time, dead air) are
// computed from the hub's clock by tick(), called from the page's single 1 s interval,
// for the tiles that are on screen only. Re-sorting happens at most once per second.

import { getLang, t, tOr } from './i18n.js';
import { fmtDuration } from './clock.js';
import {
  STATES, ORDER_FIELDS, ageLevel, comparatorFor, computeLayout, lisIndices, makeCollator, matchesFilter, mergeTile,
} from './model.js';
import {
  alertDetail, kindLabel, severityLabel, severityShortLabel, stateLabel, stateShortLabel,
} from './labels.js';

const SORT_INTERVAL_MS = 1000;

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
  el.innerHTML = `
<div class="r r-head"><span class="t-name"></span><span class="t-team"></span><span class="t-flag t-sev-mini"></span><span class="t-flag t-disc"><span class="long"></span><span class="short"></span></span></div>
<div class="r r-state"><span class="t-state"><span class="long"></span><span class="short"></span></span><span class="t-reason"></span><span class="t-time t-state-time"></span></div>
<div class="r r-dead"><span class="t-dead-label"></span><span class="t-time t-dead-time"></span></div>
<div class="r r-call"><span class="t-dir"></span><span class="t-time t-call-time"></span><span class="t-ot"><span class="long"></span><span class="short"></span></span></div><div class="r r-talk"><span class="t-spk" role="img" data-who="agent" data-on="false"></span><span class="t-ratio" data-empty="true"><span class="bar" aria-hidden="true"><span class="fill"></span></span><span class="pct"></span></span><span class="t-spk" role="img" data-who="customer" data-on="false"></span></div>
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
      fill: q('.t-ratio .fill'),
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
        const scale = `scaleX(${ratio.toFixed(2)})`;
        if (this.texts.get(n.fill) !== scale) {
          this.texts.set(n.fill, scale);
          n.fill.style.transform = scale; // CSSOM, not a style attribute: fine under a strict CSP
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

  /** Write the clock-driven parts: timers and the time-in-state colour step. */
  tick(rec, now) {
    const n = this.n;
    if (rec._stateSince !== null) {
      const ms = now - rec._stateSince;
      this.time(n.stateTime, fmtDuration(ms));
      this.attr(this.el, 'data-age', String(ageLevel(ms)));
    } else {
      this.time(n.stateTime, '');
      this.attr(this.el, 'data-age', '0');
    }
    this.time(n.callTime, rec._callStarted !== null ? fmtDuration(now - rec._callStarted) : '');
    if (rec._deadAirSince !== null) this.time(n.deadTime, fmtDuration(now - rec._deadAirSince));
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
   */
  constructor({ grid, area, clock, onSummary }) {
    this.grid = grid;
    this.area = area;
    this.clock = clock;
    this.onSummary = onSummary || (() => {});
    this.records = new Map();
    this.views = new Map();
    this.pendingSnapshot = null;
    this.pendingPatches = new Map();
    this.pendingRemoved = new Set();
    this.rafId = 0;
    this.sortKey = 'risk';
    this.filter = { team: '', state: '', text: '' };
    this.collator = makeCollator(getLang());
    this.orderDirty = false;
    this.lastSortAt = -Infinity;
    this.sortTimer = 0;
    this.summaryDirty = true;
    this.layoutDirty = true;
    this.shownCount = 0;
    this.onScreen = new Set(); // tiles in view; only tracked while the grid scrolls
    this.scrolling = false;
    this.layoutOpts = { gap: 6, maxFs: 32 };
    this.stats = { flushes: 0, patches: 0, moves: 0, lastFlushMs: 0 };

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
  }

  // -- input (called from socket handlers; never touches the DOM) --

  enqueueSnapshot(tiles) {
    this.pendingSnapshot = tiles;
    this.pendingPatches.clear();
    this.pendingRemoved.clear();
    this.schedule();
  }

  enqueuePatches(patches, removed) {
    for (const p of patches || []) {
      if (!p || !p.agent_id) continue;
      this.pendingRemoved.delete(p.agent_id);
      const prev = this.pendingPatches.get(p.agent_id);
      this.pendingPatches.set(p.agent_id, prev ? Object.assign(prev, p) : { ...p });
    }
    for (const id of removed || []) {
      this.pendingPatches.delete(id);
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
    this.lastSortAt = -Infinity; // a user's choice applies at once
    this.orderDirty = true;
    this.schedule();
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    for (const [id, rec] of this.records) this.applyFilter(id, rec);
    this.layoutDirty = true;
    this.summaryDirty = true;
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
    this.lastSortAt = -Infinity;
    this.summaryDirty = true;
    this.schedule();
  }

  get size() {
    return this.records.size;
  }

  record(agentId) {
    return this.records.get(agentId);
  }

  // -- output --

  schedule() {
    if (!this.rafId) this.rafId = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.rafId = 0;
    const t0 = performance.now();
    const now = this.clock.now();
    this.stats.flushes++;

    if (this.pendingSnapshot) {
      this.replaceAll(this.pendingSnapshot, now);
      this.pendingSnapshot = null;
    }
    for (const id of this.pendingRemoved) this.removeTile(id);
    this.pendingRemoved.clear();

    for (const [id, patch] of this.pendingPatches) {
      let rec = this.records.get(id);
      let view = this.views.get(id);
      const isNew = !rec;
      if (isNew) {
        rec = {};
        view = this.addTile(id, rec);
      }
      const changed = mergeTile(rec, patch);
      if (changed.size === 0) continue;
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
    }
    this.pendingPatches.clear();

    if (this.layoutDirty) this.layout();
    if (this.orderDirty) this.maybeSort();
    if (this.summaryDirty) this.summarise();
    this.stats.lastFlushMs = performance.now() - t0;
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
    }
    for (const id of [...this.records.keys()]) if (!keep.has(id)) this.removeTile(id);
    this.orderDirty = true;
    this.lastSortAt = -Infinity;
    this.summaryDirty = true;
    this.layoutDirty = true;
  }

  addTile(id, rec) {
    const view = new TileView(id);
    this.records.set(id, rec);
    this.views.set(id, view);
    this.grid.appendChild(view.el);
    if (this.scrolling) this.io.observe(view.el);
    this.orderDirty = true;
    this.layoutDirty = true;
    this.summaryDirty = true;
    return view;
  }

  removeTile(id) {
    const view = this.views.get(id);
    if (!view) return;
    this.io.unobserve(view.el);
    view.el.remove();
    this.views.delete(id);
    this.records.delete(id);
    this.onScreen.delete(id);
    this.layoutDirty = true;
    this.summaryDirty = true;
  }

  applyFilter(id, rec) {
    const view = this.views.get(id);
    if (!view) return;
    const hide = !matchesFilter(rec, this.filter);
    if (hide !== view.hidden) {
      view.hidden = hide;
      view.el.hidden = hide;
      this.layoutDirty = true;
    }
  }

  layout() {
    this.layoutDirty = false;
    let shown = 0;
    for (const v of this.views.values()) if (!v.hidden) shown++;
    this.shownCount = shown;
    const style = getComputedStyle(this.area);
    const w = this.area.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const h = this.area.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    const L = computeLayout(w, h, shown, this.layoutOpts);
    const key = `${L.cols}|${L.tileH}|${L.fs}|${L.density}|${L.scroll}`;
    if (key === this.layoutKey) return;
    this.layoutKey = key;
    const gs = this.grid.style;
    gs.setProperty('--cols', String(L.cols));
    gs.setProperty('--tile-h', `${L.tileH}px`);
    gs.setProperty('--gap', `${this.layoutOpts.gap}px`);
    gs.setProperty('--fs', `${L.fs}px`);
    this.grid.dataset.density = L.density;
    this.grid.dataset.scroll = String(L.scroll);
    if (L.scroll !== this.scrolling) {
      // Every tile is on screen unless the grid scrolls: only then is visibility tracked.
      this.scrolling = L.scroll;
      this.onScreen.clear();
      this.io.disconnect();
      if (L.scroll) for (const v of this.views.values()) this.io.observe(v.el);
    }
    this.summaryDirty = true;
  }

  maybeSort() {
    const t = performance.now();
    const wait = this.lastSortAt + SORT_INTERVAL_MS - t;
    if (wait > 0) {
      if (!this.sortTimer) {
        this.sortTimer = setTimeout(() => { this.sortTimer = 0; this.schedule(); }, wait);
      }
      return;
    }
    this.lastSortAt = t;
    this.orderDirty = false;
    const recs = [...this.records.values()].sort(comparatorFor(this.sortKey, this.collator));
    // Move only the tiles that are out of place: those outside the longest run that is
    // already in order (each move restyles and re-lays out the moved tile).
    const grid = this.grid;
    const pos = new Map();
    let i = 0;
    for (const child of grid.children) pos.set(child, i++);
    const els = recs.map((rec) => this.views.get(rec.agent_id).el);
    const keep = lisIndices(els.map((el) => pos.get(el) ?? -1));
    let anchor = null;
    for (let k = els.length - 1; k >= 0; k--) {
      if (!keep.has(k)) {
        grid.insertBefore(els[k], anchor);
        this.stats.moves++;
      }
      anchor = els[k];
    }
  }

  summarise() {
    this.summaryDirty = false;
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

  /** Called once a second by the page: update the timers of the tiles on screen. */
  tick() {
    const now = this.clock.now();
    if (this.scrolling) {
      for (const id of this.onScreen) {
        const view = this.views.get(id);
        if (view && !view.hidden) view.tick(this.records.get(id), now);
      }
      return;
    }
    for (const [id, view] of this.views) if (!view.hidden) view.tick(this.records.get(id), now);
  }
}
