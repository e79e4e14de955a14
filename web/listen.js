// Listen in, whisper and barge: the browser side of WebRTC monitoring (docs/protocol.md §4).
//
// The drawer's buttons (and the header's spot-check button) dispatch a `fw-listen` CustomEvent
// {agentId, mode}; this module offers audio to the hub (recvonly to listen; sendrecv with the
// microphone to whisper or barge), waits for every ICE candidate, posts the offer to
// /api/monitor and plays the answer's stream: the agent on the left, the customer on the right.
// One session at a time: starting another ends the current one.
//
// A bar at the bottom of the page shows who is being monitored, in which mode, a live level
// meter and a stop button. `window.fwMonitor` exposes the state for tests (level, bytes).

import { t, onLangChange } from './i18n.js';

const GATHER_TIMEOUT_MS = 3000;

let current = null; // {session, pc, mic, audio, analyser, agentName}
let bar = null;
let nameOf = () => '';
let iceServers = [];
let maxListeners = 5;

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function ensureBar() {
  if (bar) return bar;
  bar = el('div', { id: 'monitor-bar', role: 'status', 'aria-live': 'polite', hidden: '' });
  const label = el('span', { class: 'monitor-label' });
  const meter = el('span', { class: 'monitor-meter', 'aria-hidden': 'true' });
  meter.append(el('span', { class: 'monitor-meter-l' }), el('span', { class: 'monitor-meter-r' }));
  const stop = el('button', { type: 'button', class: 'monitor-stop' });
  stop.addEventListener('click', () => stopMonitoring());
  bar.append(label, meter, stop);
  document.body.append(bar);
  onLangChange(renderBar);
  // a modal dialog (the agent drawer) makes the rest of the page inert: the bar moves into
  // whichever dialog is open, so "Stop" stays within reach
  new MutationObserver(() => { placeBar(); markButtons(); }).observe(document.body, {
    subtree: true, attributes: true, attributeFilter: ['open', 'data-agent-id'],
  });
  return bar;
}

/** Mark the drawer button of the mode being used on the drawer's agent (aria-pressed). */
function markButtons() {
  document.querySelectorAll('[data-listen-mode]').forEach((btn) => {
    const agentId = btn.closest('[data-agent-id]')?.dataset.agentId;
    const on = Boolean(current?.session && current.session.agent_id === agentId
      && current.session.mode === btn.dataset.listenMode);
    btn.setAttribute('aria-pressed', String(on));
  });
}

function placeBar() {
  const home = document.querySelector('dialog[open]') || document.body;
  if (bar.parentElement !== home) home.append(bar);
}

function renderBar(message) {
  ensureBar();
  markButtons();
  const label = bar.querySelector('.monitor-label');
  const stop = bar.querySelector('.monitor-stop');
  stop.textContent = t('listen.stop');
  if (current) {
    bar.hidden = false;
    bar.dataset.mode = current.session.mode;
    bar.dataset.state = current.pc.connectionState;
    label.textContent = t(`listen.bar.${current.session.mode}`, {
      agent: current.agentName || nameOf(current.session.agent_id) || current.session.agent_id,
    }) + (current.pc.connectionState === 'connected' ? '' : ` — ${t('listen.connecting')}`);
    stop.hidden = false;
  } else if (message) {
    bar.hidden = false;
    bar.dataset.mode = 'error';
    label.textContent = message;
    stop.hidden = true;
    clearTimeout(renderBar.timer);
    renderBar.timer = setTimeout(() => { if (!current) bar.hidden = true; }, 8000);
  } else {
    bar.hidden = true;
  }
}

/** Munge the offer so Chromium decodes the call in stereo (agent left, customer right). */
function wantStereo(sdp) {
  return sdp.replace(/a=fmtp:(\d+) (.*useinbandfec=1.*)/g, (line, pt, params) =>
    params.includes('stereo=1') ? line : `a=fmtp:${pt} ${params};stereo=1;sprop-stereo=1`);
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === 'complete') { pc.removeEventListener('icegatheringstatechange', done); resolve(); } };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_TIMEOUT_MS); // send what we have
  });
}

function meterLoop() {
  if (!current?.analyser) return;
  const levels = current.analyser.map((a) => {
    const buf = new Float32Array(a.fftSize);
    a.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    return Math.sqrt(sum / buf.length);
  });
  current.levels = levels;
  if (bar) {
    bar.querySelector('.monitor-meter-l').style.transform = `scaleX(${Math.min(1, levels[0] * 4)})`;
    bar.querySelector('.monitor-meter-r').style.transform = `scaleX(${Math.min(1, levels[1] * 4)})`;
  }
  current.raf = requestAnimationFrame(meterLoop);
}

function playStream(stream) {
  // an <audio> element plays it (browsers need one for WebRTC audio to flow); WebAudio measures
  current.audio = el('audio', { autoplay: '' });
  current.audio.srcObject = stream;
  current.audio.play().catch(() => {});
  try {
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const split = ctx.createChannelSplitter(2);
    source.connect(split);
    current.analyser = [0, 1].map((i) => {
      const a = ctx.createAnalyser();
      a.fftSize = 1024;
      split.connect(a, i);
      return a;
    });
    current.ctx = ctx;
    ctx.resume().catch(() => {});
    meterLoop();
  } catch (err) {
    console.warn('floorwatch: no level meter', err);
  }
}

function refusal(status, body) {
  if (body?.error_key) return t(body.error_key, { max: maxListeners });
  return t('listen.refused.other', { status, error: body?.error || '' });
}

/** Start monitoring `agentId` (null: a spot check picks the call). Returns the session or null. */
export async function startMonitoring(agentId, mode = 'listen', { agentName = '', reason = '' } = {}) {
  await stopMonitoring();
  let mic = null;
  if (mode !== 'listen') {
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      renderBar(t('listen.refused.microphone'));
      return null;
    }
  }
  const pc = new RTCPeerConnection({ iceServers });
  if (mic) pc.addTransceiver(mic.getAudioTracks()[0], { direction: 'sendrecv' });
  else pc.addTransceiver('audio', { direction: 'recvonly' });
  const entry = { pc, mic, agentName, session: null, levels: [0, 0] };
  pc.addEventListener('track', (e) => {
    if (current !== entry) return;
    playStream(e.streams[0] || new MediaStream([e.track]));
  });
  pc.addEventListener('connectionstatechange', () => {
    if (current !== entry) return;
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
      finish(entry, t('listen.lost'));
    } else renderBar();
  });
  const offer = await pc.createOffer();
  await pc.setLocalDescription({ type: 'offer', sdp: wantStereo(offer.sdp) });
  await gathered(pc);
  const body = { mode, reason, sdp: pc.localDescription.sdp };
  if (agentId) body.agent_id = agentId; else body.spot_check = true;
  let res;
  let answer;
  try {
    res = await fetch('/api/monitor', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body), credentials: 'same-origin',
    });
    answer = await res.json().catch(() => ({}));
  } catch (err) {
    answer = { error: String(err) };
  }
  if (!res || res.status !== 201) {
    if (res?.status === 400 && answer.error_key === 'listen.refused.reason' && !reason) {
      const given = window.prompt(t('listen.reason_prompt'));
      closePeer(entry);
      if (given && given.trim()) return startMonitoring(agentId, mode, { agentName, reason: given.trim() });
      renderBar(t('listen.refused.reason'));
      return null;
    }
    closePeer(entry);
    renderBar(refusal(res?.status ?? 0, answer));
    return null;
  }
  entry.session = answer.session;
  current = entry;
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  renderBar();
  document.dispatchEvent(new CustomEvent('fw-monitoring', { detail: { session: entry.session } }));
  return entry.session;
}

function closePeer(entry) {
  entry.mic?.getTracks().forEach((tr) => tr.stop());
  try { entry.pc.close(); } catch { /* closed already */ }
  if (entry.raf) cancelAnimationFrame(entry.raf);
  entry.ctx?.close().catch(() => {});
  if (entry.audio) entry.audio.srcObject = null;
}

function finish(entry, message) {
  closePeer(entry);
  if (current === entry) {
    current = null;
    renderBar(message);
    document.dispatchEvent(new CustomEvent('fw-monitoring', { detail: { session: null } }));
  }
}

/** Stop the current session (tell the hub, so the audit trail records who ended it). */
export async function stopMonitoring() {
  const entry = current;
  if (!entry) return;
  current = null;
  try {
    await fetch(`/api/monitor/${encodeURIComponent(entry.session.id)}`, {
      method: 'DELETE', credentials: 'same-origin',
    });
  } catch { /* the hub ends it when the connection closes */ }
  finish(entry);
  renderBar();
}

/** Wire the page: drawer buttons (`fw-listen`) and the spot-check button. `me` is /api/me. */
export function initListen(me, { tileName = () => '' } = {}) {
  nameOf = tileName;
  iceServers = me?.monitoring?.ice_servers || [];
  maxListeners = me?.monitoring?.max_listeners_per_call ?? 5;
  const perms = new Set(me?.user?.permissions || []);
  ensureBar();
  document.addEventListener('fw-listen', (e) => {
    const { agentId, mode } = e.detail || {};
    if (current && current.session.agent_id === agentId && current.session.mode === mode) {
      stopMonitoring();
    } else {
      startMonitoring(agentId, mode || 'listen', { agentName: tileName(agentId) });
    }
  });
  document.querySelectorAll('[data-action="spot-check"]').forEach((btn) => {
    btn.hidden = !(perms.has('listen') && me?.monitoring?.enabled);
    btn.addEventListener('click', () => startMonitoring(null, 'listen'));
  });
  window.addEventListener('beforeunload', () => { if (current) closePeer(current); });
  window.fwMonitor = {
    get session() { return current?.session ?? null; },
    get state() { return current?.pc.connectionState ?? 'none'; },
    get levels() { return current?.levels ?? [0, 0]; },
    async inboundBytes() {
      if (!current) return 0;
      let bytes = 0;
      (await current.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'audio') bytes += r.bytesReceived; });
      return bytes;
    },
    start: startMonitoring,
    stop: stopMonitoring,
  };
}
