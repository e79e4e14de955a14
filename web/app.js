// The supervisor wall: wires the hub socket, the tile grid, the alerts panel and the
// header controls together. Served as /static/app.js by the hub, loaded by index.html.

import { bindLangSelect, getLang, initI18n, LANGS, onLangChange, setLang, t } from './i18n.js';
import { ServerClock, fmtAge, fmtTimeOfDay } from './clock.js';
import { SORT_KEYS, summariseAgentAlerts } from './model.js';
import { TileGrid } from './tiles.js';
import { AlertsPanel } from './alerts.js';
import { AgentDrawer } from './drawer.js';
import { initListen } from './listen.js';
import { WallSocket } from './wallsocket.js';
import { SoundCue } from './sound.js';
import { alertDetail, kindLabel } from './labels.js';

const $ = (sel) => document.querySelector(sel);

const LAYOUT = {
  desk: { gap: 6, maxFs: 30 },
  wall: { gap: 8, maxFs: 44 },
};

function goLogin() {
  location.replace('/login');
}

async function fetchMe() {
  try {
    const res = await fetch('/api/me', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (res.status === 401 || res.status === 403) return { unauthorized: true };
    if (!res.ok) return {};
    return await res.json();
  } catch {
    return {}; // hub unreachable: the socket will report it
  }
}

async function ackRequest(id) {
  const res = await fetch(`/api/alerts/${encodeURIComponent(id)}/ack`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
  });
  if (res.status === 401) {
    goLogin();
  }
  if (!res.ok) {
    let body = {};
    try { body = await res.json(); } catch { /* not JSON */ }
    const err = new Error(body.error || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return res.json();
}

async function main() {
  await initI18n();
  const me = await fetchMe();
  if (me.unauthorized) {
    goLogin();
    return;
  }
  if (me.user) {
    const name = me.user.display_name || me.user.username;
    $('#user').textContent = name;
    $('#user').title = t('app.signed_in_as', { name: `${name} (${me.user.username})` });
    $('#user').dataset.username = me.user.username || '';
    $('#user').dataset.role = me.user.role || '';
  }

  const params = new URLSearchParams(location.search);
  const clock = new ServerClock();
  const sound = new SoundCue();

  // ---- tiles ----
  let drawer = null; // the agent drawer, made once the alerts panel exists
  const grid = new TileGrid({
    grid: $('#grid'),
    area: $('#floor'),
    clock,
    onSummary: renderSummary,
    onOpen: (agentId, tileEl) => drawer?.open(agentId, tileEl),
    onTileChange: (agentId, changed) => drawer?.tileChanged(agentId, changed),
  });
  window.floorwatch = { grid, clock }; // for browser tests and debugging

  // ---- alerts ----
  const panel = new AlertsPanel({
    list: $('#alert-list'),
    empty: $('#alerts-empty'),
    more: $('#alerts-more'),
    agentName: (agentId) => grid.record(agentId)?.name || agentId,
    ackRequest,
    onChange: renderUnacked,
    onRemoved: settleTileAlert,
  });
  window.floorwatch.panel = panel;

  // ---- agent drawer ----
  drawer = new AgentDrawer({
    dialog: $('#drawer'),
    grid,
    panel,
    clock,
    ackRequest,
    onUnauthorized: goLogin,
  });
  // `permissions` (listen, whisper, barge) decide which listen-in buttons the drawer shows.
  drawer.setPermissions(me.user?.permissions ?? me.permissions ?? []);
  // listen / whisper / barge over WebRTC (web/listen.js): drawer buttons and the spot check
  initListen(me, { tileName: (agentId) => grid.record(agentId)?.name || agentId });
  $('#audit-link').hidden = !(me.user?.permissions || []).includes('audit');
  window.floorwatch.drawer = drawer;

  function renderUnacked() {
    const n = panel.unackedCount;
    const el = $('#unacked-count');
    el.textContent = String(n);
    el.dataset.count = String(n);
    $('#unacked').dataset.nonzero = String(n > 0);
    drawer?.panelChanged();
  }

  /** After an alert left the unacked set: correct its agent's tile until the hub's patch arrives. */
  function settleTileAlert(alert) {
    drawer?.alertChanged(alert);
    const rec = grid.record(alert.agent_id);
    if (!rec) return;
    const touchesTile = (rec.alert && String(rec.alert.id) === String(alert.id)) || rec.severity === alert.severity;
    if (!touchesTile) return;
    const { alert: latest, severity } = summariseAgentAlerts(panel.forAgent(alert.agent_id));
    grid.patchLocal(alert.agent_id, { alert: latest, severity });
  }

  // ---- announcements ----
  const announcer = $('#announcer');
  function announce(text) {
    announcer.textContent = '';
    setTimeout(() => { announcer.textContent = text; }, 50);
  }
  let toastTimer = 0;
  function toast(text) {
    const el = $('#toast');
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  // ---- socket ----
  const wsUrl = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws/wall`;
  const socket = new WallSocket({
    url: wsUrl,
    onMessage: handleMessage,
    onStatus: renderConn,
    onUnauthorized: () => {
      toast(t('session.ended'));
      setTimeout(goLogin, 800);
    },
    checkSession: async () => !(await fetchMe()).unauthorized,
  });
  window.floorwatch.socket = socket;

  function handleMessage(msg) {
    if (msg.server_time) clock.observe(msg.server_time);
    switch (msg.type) {
      case 'snapshot':
        grid.enqueueSnapshot(msg.tiles || []);
        panel.replaceAll(msg.alerts || []);
        break;
      case 'tiles':
        grid.enqueuePatches(msg.patches || [], msg.removed || []);
        break;
      case 'alert': {
        const alert = msg.alert;
        if (!alert || alert.id === undefined) break;
        const { isNew } = panel.upsert(alert);
        drawer.alertChanged(alert);
        if (isNew && alert.severity === 'critical') {
          sound.critical();
          const agent = grid.record(alert.agent_id)?.name || alert.agent_id;
          announce(t('announce.critical', { kind: kindLabel(alert.kind), agent, detail: alertDetail(alert) }));
        }
        break;
      }
      default:
        break; // unknown message types are ignored (forward compatible)
    }
  }

  const connEl = $('#conn');
  const staleBanner = $('#stale-banner');
  function renderConn(state) {
    const shown = state === 'connecting' ? 'reconnecting' : state;
    connEl.dataset.state = shown;
    connEl.dataset.phase = state;
    document.body.dataset.conn = state;
    const label = connEl.querySelector('.conn-label');
    const key = `conn.${state}`;
    label.dataset.i18n = key;
    label.textContent = t(key);
    renderConnAge();
  }
  function renderConnAge() {
    const ageMs = socket.dataAge();
    const el = connEl.querySelector('.conn-age');
    const text = ageMs > 0 ? t('conn.age', { age: fmtAge(ageMs, t) }) : '';
    if (el.textContent !== text) el.textContent = text;
    const banner = `${t(`conn.${socket.state}`)}${text ? ' · ' + text : ''}`;
    if (staleBanner.textContent !== banner) staleBanner.textContent = banner;
    connEl.dataset.ageS = String(Math.floor(ageMs / 1000));
  }

  // ---- header: counts, filters, sort ----
  const countButtons = [...document.querySelectorAll('[data-count-state]')];
  const teamSelect = $('#filter-team');
  const stateSelect = $('#filter-state');
  const textInput = $('#filter-text');
  const sortSelect = $('#sort');
  let knownTeams = '';

  function renderSummary({ counts, disconnected, total, shown, teams }) {
    for (const btn of countButtons) {
      const s = btn.dataset.countState;
      if (s === 'alert') continue;
      const n = s === 'disconnected' ? disconnected : counts[s] ?? 0;
      const nEl = btn.querySelector('.c-n');
      if (nEl.textContent !== String(n)) nEl.textContent = String(n);
      btn.dataset.count = String(n);
    }
    const sortedTeams = teams.sort((a, b) => a.localeCompare(b, getLang()));
    const teamKey = sortedTeams.join('\u0000');
    if (teamKey !== knownTeams) {
      knownTeams = teamKey;
      const current = teamSelect.value || grid.filter.team;
      const first = teamSelect.options[0];
      teamSelect.replaceChildren(first, ...sortedTeams.map((team) => new Option(team, team)));
      if (current && !sortedTeams.includes(current)) teamSelect.add(new Option(current, current));
      teamSelect.value = current;
    }
    const showing = $('#showing');
    showing.textContent = shown !== total ? t('filter.showing', { shown, total }) : '';
    showing.dataset.shown = String(shown);
    showing.dataset.total = String(total);
    $('#no-match').hidden = !(total > 0 && shown === 0);
  }

  function applyFilter(update, { push = true } = {}) {
    grid.setFilter(update);
    const f = grid.filter;
    teamSelect.value = f.team;
    stateSelect.value = f.state;
    if (textInput.value !== f.text) textInput.value = f.text;
    for (const btn of countButtons) btn.setAttribute('aria-pressed', String(f.state === btn.dataset.countState));
    if (push) updateUrl({ team: f.team, state: f.state, q: f.text });
  }

  function setSort(key) {
    if (!SORT_KEYS.includes(key)) key = 'risk';
    sortSelect.value = key;
    grid.setSort(key);
    updateUrl({ sort: key === 'risk' ? '' : key });
  }

  function updateUrl(changes) {
    const p = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) {
      if (v) p.set(k, v);
      else p.delete(k);
    }
    const qs = p.toString();
    history.replaceState(null, '', qs ? `?${qs}` : location.pathname);
  }

  teamSelect.addEventListener('change', () => applyFilter({ team: teamSelect.value }));
  stateSelect.addEventListener('change', () => applyFilter({ state: stateSelect.value }));
  let textTimer = 0;
  textInput.addEventListener('input', () => {
    clearTimeout(textTimer);
    textTimer = setTimeout(() => applyFilter({ text: textInput.value }), 120);
  });
  sortSelect.addEventListener('change', () => setSort(sortSelect.value));
  for (const btn of countButtons) {
    btn.addEventListener('click', () => {
      const s = btn.dataset.countState;
      applyFilter({ state: grid.filter.state === s ? '' : s });
    });
  }
  $('#clear-filters').addEventListener('click', () => applyFilter({ team: '', state: '', text: '' }));

  // ---- wall / desk mode ----
  const wallBtn = $('#wall-toggle');
  let enteredFullscreen = false;
  function setMode(mode, { user = false } = {}) {
    document.body.dataset.mode = mode;
    wallBtn.setAttribute('aria-pressed', String(mode === 'wall'));
    wallBtn.dataset.i18n = mode === 'wall' ? 'mode.leave_wall' : 'mode.enter_wall';
    wallBtn.textContent = t(wallBtn.dataset.i18n);
    grid.setLayoutOptions(LAYOUT[mode]);
    updateUrl({ mode: mode === 'wall' ? 'wall' : '' });
    if (!user) return;
    if (mode === 'wall' && !document.fullscreenElement && document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().then(() => { enteredFullscreen = true; }, () => {});
    } else if (mode === 'desk' && document.fullscreenElement && enteredFullscreen) {
      enteredFullscreen = false;
      document.exitFullscreen().catch(() => {});
    }
  }
  wallBtn.addEventListener('click', () => setMode(document.body.dataset.mode === 'wall' ? 'desk' : 'wall', { user: true }));
  document.addEventListener('fullscreenchange', () => {
    if (!document.fullscreenElement && enteredFullscreen) {
      enteredFullscreen = false;
      if (document.body.dataset.mode === 'wall') setMode('desk');
    }
  });

  // ---- sound ----
  const soundBtn = $('#sound-toggle');
  function renderSound() {
    soundBtn.setAttribute('aria-pressed', String(sound.enabled));
    soundBtn.dataset.i18n = sound.enabled ? 'sound.on' : 'sound.off';
    soundBtn.textContent = t(soundBtn.dataset.i18n);
  }
  soundBtn.addEventListener('click', () => {
    sound.setEnabled(!sound.enabled);
    renderSound();
    if (sound.enabled) sound.critical(); // let the supervisor hear what it sounds like
  });

  // ---- language, sign-out ----
  bindLangSelect($('#lang'));
  onLangChange(() => {
    grid.relabel();
    panel.relabel();
    drawer.relabel();
    renderConn(socket.state);
    renderSound();
    setMode(document.body.dataset.mode);
  });

  $('#signout').addEventListener('click', async () => {
    try {
      await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
    } catch { /* going to the login page anyway */ }
    location.assign('/login');
  });

  // ---- keyboard ----
  const help = $('#help');
  document.addEventListener('keydown', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (drawer.isOpen) return; // the drawer is modal: it handles its own keys (Esc closes it)
    const typing = ev.target.closest?.('input, textarea, select, [contenteditable="true"]');
    if (ev.key === 'Escape') {
      if (ev.target === textInput && textInput.value) {
        applyFilter({ text: '' });
      } else if (help.open) {
        help.open = false;
        help.querySelector('summary').focus();
      } else if (document.body.dataset.mode === 'wall') {
        setMode('desk', { user: true });
      } else if (typing) {
        ev.target.blur();
      }
      return;
    }
    if (typing) return;
    switch (ev.key) {
      case 'a': {
        const target = panel.focusedId() ? panel.get(panel.focusedId()) : panel.newest();
        if (target) panel.ack(target.id);
        else toast(t('alerts.nothing_to_ack'));
        break;
      }
      case 'j': panel.moveFocus(1); break;
      case 'k': panel.moveFocus(-1); break;
      case '/': ev.preventDefault(); textInput.focus(); textInput.select(); break;
      case 's': setSort(SORT_KEYS[(SORT_KEYS.indexOf(grid.sortKey) + 1) % SORT_KEYS.length]); break;
      case 'w': setMode(document.body.dataset.mode === 'wall' ? 'desk' : 'wall', { user: true }); break;
      case 'm': soundBtn.click(); break;
      case 'l': setLang(LANGS[(LANGS.indexOf(getLang()) + 1) % LANGS.length]); break;
      case '?': help.open = !help.open; break;
      default: return;
    }
  });

  // ---- one shared 1 s timer for every clock-driven text ----
  const clockEl = $('#clock');
  function everySecond() {
    grid.tick();
    drawer.tick();
    renderConnAge();
    const now = clock.now();
    clockEl.textContent = fmtTimeOfDay(now);
    clockEl.dateTime = new Date(now).toISOString();
    // Align the next tick with the start of the next hub-clock second.
    setTimeout(everySecond, 1000 - (clock.now() % 1000) + 5);
  }

  // ---- start ----
  applyFilter({ team: params.get('team') || '', state: params.get('state') || '', text: params.get('q') || '' }, { push: false });
  setSort(params.get('sort') || 'risk');
  setMode(params.get('mode') === 'wall' ? 'wall' : 'desk');
  renderSound();
  renderUnacked();
  renderConn('connecting');
  socket.start();
  everySecond();
}

main().catch((err) => {
  console.error('floorwatch: wall failed to start', err);
  document.body.dataset.failed = 'true';
});
