// Pure wall logic: no DOM, no clock, no sockets. Everything here takes its inputs as
// arguments so it can be exercised from a browser test or `node --input-type=module`.

import { parseTime } from './clock.js';

/** States shown on the wall, in the order of the header counts. */
export const STATES = ['on_call', 'hold', 'wrap_up', 'ready', 'logged_in', 'break'];
export const SEVERITIES = ['low', 'medium', 'high', 'critical'];

export function severityRank(sev) {
  return sev ? SEVERITIES.indexOf(sev) + 1 : 0;
}

/** VICIdial-style colour steps for time in state: <10 s, 10 s, 1 min, 5 min. */
export function ageLevel(ms) {
  if (ms >= 300_000) return 3;
  if (ms >= 60_000) return 2;
  if (ms >= 10_000) return 1;
  return 0;
}

// Tile fields whose ISO times are parsed once per change and kept as epoch ms.
const TIME_FIELDS = [
  ['state_since', '_stateSince'],
  ['call_started_at', '_callStarted'],
  ['dead_air_since', '_deadAirSince'],
];

/** Fields whose change can move a tile in a sort order or change its filter match. */
export const ORDER_FIELDS = new Set(['name', 'team', 'state', 'state_since', 'severity', 'dead_air_since', 'connected']);

/**
 * Merge a patch (or a full Tile) into the record `rec` in place.
 * Returns the set of field names that changed value.
 */
export function mergeTile(rec, patch) {
  const changed = new Set();
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (key === 'alert') {
      const before = rec.alert;
      if (!sameAlert(before, value)) changed.add(key);
      rec.alert = value ?? null;
      continue;
    }
    if (rec[key] !== value) {
      rec[key] = value;
      changed.add(key);
    }
  }
  for (const [field, cache] of TIME_FIELDS) {
    if (changed.has(field) || rec[cache] === undefined) rec[cache] = parseTime(rec[field]);
  }
  return changed;
}

function sameAlert(a, b) {
  if (!a || !b) return !a && !b;
  return a.id === b.id && a.severity === b.severity && a.duration_s === b.duration_s && a.acked_by === b.acked_by;
}

export function makeCollator(lang) {
  return new Intl.Collator(lang === 'zh-CN' ? 'zh-CN-u-co-pinyin' : lang, { numeric: true, sensitivity: 'base' });
}

function displayName(rec) {
  return rec.name || rec.agent_id || '';
}

/** Comparators by sort key. Risk: unacked severity, then dead air (longest first), then time in state. */
export function comparatorFor(sortKey, collator) {
  const byName = (a, b) => collator.compare(displayName(a), displayName(b)) || cmpStr(a.agent_id, b.agent_id);
  if (sortKey === 'name') return byName;
  if (sortKey === 'team') return (a, b) => collator.compare(a.team || '', b.team || '') || byName(a, b);
  return (a, b) =>
    severityRank(b.severity) - severityRank(a.severity) ||
    nullsLast(a._deadAirSince, b._deadAirSince) ||
    nullsLast(a._stateSince, b._stateSince) ||
    byName(a, b);
}

function cmpStr(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Earlier time first (= longer running); missing times last. */
function nullsLast(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return a - b;
}

export const SORT_KEYS = ['risk', 'name', 'team'];

/**
 * filter: {team, state, text}. `state` is a tile state, or 'disconnected', or 'alert'
 * (any unacknowledged alert). Text matches name or agent id, case-insensitive.
 */
export function matchesFilter(rec, filter) {
  if (filter.team && (rec.team || '') !== filter.team) return false;
  if (filter.state) {
    if (filter.state === 'disconnected') {
      if (rec.connected !== false) return false;
    } else if (filter.state === 'alert') {
      if (!rec.severity) return false;
    } else if (rec.state !== filter.state) {
      return false;
    }
  }
  if (filter.text) {
    const needle = filter.text.trim().toLowerCase();
    if (needle && !(displayName(rec).toLowerCase().includes(needle) || String(rec.agent_id).toLowerCase().includes(needle))) {
      return false;
    }
  }
  return true;
}

// Densities: how many text lines a tile shows, the font size below which the next
// smaller density is used instead, and how many characters wide its longest line is.
export const DENSITIES = [
  { name: 'xl', lines: 6, minFs: 15, chars: 17, weight: 1.2 },
  { name: 'l', lines: 5, minFs: 14, chars: 16, weight: 1.15 },
  { name: 'm', lines: 4, minFs: 12, chars: 14, weight: 1.08 },
  { name: 's', lines: 3, minFs: 11, chars: 11, weight: 1.0 },
  { name: 'xs', lines: 2, minFs: 0, chars: 8, weight: 0.9 },
];
const LINE_HEIGHT = 1.25;
const MIN_TILE_H = 34;
const MIN_TILE_W = 64;

function fitDensity(w, h, maxFs) {
  for (const d of DENSITIES) {
    const fs = Math.min(h / (d.lines * LINE_HEIGHT + 0.9), (w - 10) / (d.chars * 0.62), maxFs);
    if (fs >= d.minFs || d.name === 'xs') return { density: d, fs };
  }
  return null; // unreachable: xs always fits
}

/**
 * Choose columns, tile size, density and font size so that `count` tiles fill a
 * width x height area. When even the smallest readable tile does not fit, tiles keep
 * a minimum size and the area scrolls (`scroll: true`).
 */
export function computeLayout(width, height, count, { gap = 6, maxFs = 32 } = {}) {
  if (count <= 0 || width <= 0 || height <= 0) {
    return { cols: 1, tileW: Math.max(width, 0), tileH: 0, density: 'l', fs: 14, scroll: false };
  }
  let best = null;
  for (let cols = 1; cols <= count; cols++) {
    const rows = Math.ceil(count / cols);
    const w = (width - gap * (cols - 1)) / cols;
    if (w < MIN_TILE_W) break;
    const h = (height - gap * (rows - 1)) / rows;
    if (h < MIN_TILE_H) continue;
    const tileH = Math.min(h, w * 0.85); // never taller than wide
    const fit = fitDensity(w, tileH, maxFs);
    const score = fit.fs * fit.density.weight;
    const area = w * tileH;
    // Equal scores happen when the font size hits maxFs: then prefer the bigger tiles.
    if (!best || score > best.score + 0.01 || (Math.abs(score - best.score) <= 0.01 && area > best.area)) {
      best = { cols, tileW: w, tileH, score, area, ...fit };
    }
  }
  if (!best) {
    // Too many tiles for the area: keep tiles at a minimum size and scroll.
    const cols = Math.max(1, Math.floor((width + gap) / (MIN_TILE_W + gap)));
    const fit = fitDensity(MIN_TILE_W, MIN_TILE_H, maxFs);
    return { cols, tileW: (width - gap * (cols - 1)) / cols, tileH: MIN_TILE_H, density: fit.density.name, fs: Math.max(fit.fs, 8), scroll: true };
  }
  return {
    cols: best.cols,
    tileW: best.tileW,
    tileH: Math.floor(best.tileH),
    density: best.density.name,
    fs: Math.round(Math.max(best.fs, 8) * 10) / 10,
    scroll: false,
  };
}

/**
 * Indices (into `seq`) of one longest strictly increasing subsequence, as a Set.
 * Used to reorder DOM children with the fewest moves: elements whose current
 * positions form the LIS stay put, every other element is moved once.
 */
export function lisIndices(seq) {
  const tails = []; // tails[k] = index in seq of the smallest tail of an increasing run of length k+1
  const prev = new Array(seq.length);
  for (let i = 0; i < seq.length; i++) {
    const v = seq[i];
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seq[tails[mid]] < v) lo = mid + 1;
      else hi = mid;
    }
    prev[i] = lo > 0 ? tails[lo - 1] : -1;
    tails[lo] = i;
  }
  const keep = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = prev[i]) keep.add(i);
  return keep;
}

// ---- alerts ---------------------------------------------------------------------

/** Alerts are grouped per call; alerts outside a call are grouped per agent. */
export function alertGroupKey(alert) {
  return alert.call_id ? `call:${alert.call_id}` : `agent:${alert.agent_id}`;
}

/** Newest first (by started_at, then id). */
export function compareAlertsNewestFirst(a, b) {
  const ta = parseTime(a.started_at) ?? 0;
  const tb = parseTime(b.started_at) ?? 0;
  return tb - ta || cmpStr(String(b.id), String(a.id));
}

/** Latest unacked alert and highest severity for one agent, from a list of unacked alerts. */
export function summariseAgentAlerts(alerts) {
  let latest = null;
  let severity = null;
  for (const a of alerts) {
    if (!latest || compareAlertsNewestFirst(a, latest) < 0) latest = a;
    if (severityRank(a.severity) > severityRank(severity)) severity = a.severity;
  }
  return { alert: latest, severity };
}
