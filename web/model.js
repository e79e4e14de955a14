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

// ---- the agent drawer -------------------------------------------------------------

const SPAN_ALERT_KINDS = { silence: 'dead_air', overtalk: 'overtalk' };
const MIN_WINDOW_S = 30;

/**
 * Spans and markers for the drawer's call timeline, in seconds of call audio.
 * `call` is the hub's call view (`since_s`, `position_s`, `segments` with `end` null while
 * speaking); `alerts` the call's alerts. Dead-air and overtalk spans come from their alerts
 * (`offset_s` = where the span began, `duration_s` null while it lasts); moments where both
 * spoke, too short to be an overtalk alert, are `overlap` spans.
 * Returns {from, to, spans: [{kind, start, end, open, alertId?}], marks: [{alert, at}], totals}.
 */
export function timelineModel(call, alerts) {
  const position = Number(call?.position_s) || 0;
  const from = Math.max(0, Number(call?.since_s) || 0);
  const to = Math.max(position, from + MIN_WINDOW_S);
  const clip = (a, b) => [Math.max(from, a), Math.min(to, b)];
  const spans = [];
  const bySpeaker = { agent: [], customer: [] };
  const totals = { agent: 0, customer: 0, overtalk: 0, dead_air: 0, alerts: 0 };
  for (const seg of call?.segments || []) {
    if (!(seg.speaker in bySpeaker)) continue;
    const open = seg.end === null || seg.end === undefined;
    const [start, end] = clip(Number(seg.start), open ? position : Number(seg.end));
    if (!(end > start) && !open) continue;
    bySpeaker[seg.speaker].push([start, end]);
    spans.push({ kind: seg.speaker, start, end: Math.max(start, end), open });
    totals[seg.speaker] += Math.max(0, end - start);
  }
  const alertSpans = [];
  for (const a of alerts || []) {
    const kind = SPAN_ALERT_KINDS[a.kind];
    if (!kind || a.offset_s === null || a.offset_s === undefined) continue;
    const open = a.duration_s === null || a.duration_s === undefined;
    const startRaw = Number(a.offset_s);
    const [start, end] = clip(startRaw, open ? position : startRaw + Number(a.duration_s));
    if (end < start) continue;
    alertSpans.push({ kind, start, end, open, alertId: String(a.id) });
    totals[kind]++;
  }
  // Short overlaps: both speaking, outside an overtalk alert's span.
  const ot = alertSpans.filter((s) => s.kind === 'overtalk');
  for (const [a0, a1] of bySpeaker.agent) {
    for (const [c0, c1] of bySpeaker.customer) {
      const start = Math.max(a0, c0);
      const end = Math.min(a1, c1);
      if (end - start < 0.05) continue;
      if (ot.some((s) => s.start <= start + 0.05 && s.end >= end - 0.05)) continue;
      spans.push({ kind: 'overlap', start, end, open: false });
    }
  }
  spans.push(...alertSpans);
  const marks = [];
  for (const a of alerts || []) {
    if (a.offset_s === null || a.offset_s === undefined) continue;
    const at = Number(a.offset_s);
    if (at < from || at > to) continue;
    marks.push({ alert: a, at });
    totals.alerts++;
  }
  spans.sort((x, y) => x.start - y.start);
  marks.sort((x, y) => x.at - y.at);
  return { from, to, position, spans, marks, totals };
}

/** Axis ticks for a timeline from..to (seconds): every 15 s, 30 s, 1 min or 2 min. */
export function timelineTicks(from, to) {
  const span = to - from;
  const step = span <= 60 ? 15 : span <= 180 ? 30 : span <= 420 ? 60 : 120;
  const ticks = [];
  for (let s = Math.ceil(from / step) * step; s <= to + 1e-6; s += step) ticks.push(s);
  return ticks;
}

/**
 * Where the policy phrases in `phrases` occur in `text` (case-insensitive), as sorted,
 * merged [start, end) ranges; phrases not found verbatim (the hub matched them after
 * normalising the text) are listed in `missing`.
 */
export function highlightRanges(text, phrases) {
  const source = String(text || '');
  // Lower-casing keeps the indices unless it changes a length (a few special letters).
  const fold = (s) => { const l = s.toLowerCase(); return l.length === s.length ? l : s; };
  const hay = fold(source);
  const found = [];
  const missing = [];
  for (const raw of phrases || []) {
    const phrase = String(raw || '');
    if (!phrase) continue;
    const needle = fold(phrase);
    let at = hay.indexOf(needle);
    if (at < 0) {
      missing.push(phrase);
      continue;
    }
    while (at >= 0) {
      found.push([at, at + needle.length]);
      at = hay.indexOf(needle, at + needle.length);
    }
  }
  found.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const ranges = [];
  for (const r of found) {
    const last = ranges[ranges.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else ranges.push([r[0], r[1]]);
  }
  return { ranges, missing };
}

/**
 * State history rows (hub order: oldest first) -> newest first, each with `startMs` and
 * `durationMs` (until the next change; the newest runs until `now`, `current: true`).
 */
export function historyRows(rows, now) {
  const out = [];
  const list = (rows || []).map((r) => ({ ...r, startMs: parseTime(r.at) })).filter((r) => r.startMs !== null);
  list.sort((a, b) => a.startMs - b.startMs);
  for (let i = 0; i < list.length; i++) {
    const next = list[i + 1];
    const end = next ? next.startMs : now;
    out.push({ ...list[i], durationMs: Math.max(0, end - list[i].startMs), current: !next });
  }
  return out.reverse();
}
