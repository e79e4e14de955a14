// Optional sound cue for critical alerts: a short two-tone beep made with WebAudio
// (no audio files). Off by default; the choice is saved in localStorage.
// Browsers only let audio start after a user gesture, so the AudioContext is created
// (or resumed) when the supervisor switches the sound on.

const STORAGE_KEY = 'fw.sound';
const MIN_GAP_MS = 1500; // several critical alerts at once give one cue

export class SoundCue {
  constructor() {
    this.enabled = readEnabled();
    this.ctx = null;
    this.lastAt = 0;
  }

  setEnabled(on) {
    this.enabled = Boolean(on);
    try { localStorage.setItem(STORAGE_KEY, this.enabled ? 'on' : 'off'); } catch { /* not saved */ }
    if (this.enabled) this.ensureContext();
  }

  ensureContext() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    if (!this.ctx) this.ctx = new AC();
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  /** Play the critical-alert cue (if enabled). Returns true when a beep was scheduled. */
  critical() {
    if (!this.enabled) return false;
    const now = performance.now();
    if (now - this.lastAt < MIN_GAP_MS) return false;
    const ctx = this.ensureContext();
    if (!ctx) return false;
    this.lastAt = now;
    const t0 = ctx.currentTime + 0.02;
    beep(ctx, 880, t0, 0.16);
    beep(ctx, 660, t0 + 0.22, 0.22);
    return true;
  }
}

function beep(ctx, freq, at, dur) {
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = 'sine';
  osc.frequency.setValueAtTime(freq, at);
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + dur);
  osc.connect(gain).connect(ctx.destination);
  osc.start(at);
  osc.stop(at + dur + 0.05);
}

function readEnabled() {
  try { return localStorage.getItem(STORAGE_KEY) === 'on'; } catch { return false; }
}
