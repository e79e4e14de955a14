// The hub's clock as seen from the browser, and duration formatting.
//
// Every hub message carries `server_time`. offset = server_time - local receive time
// underestimates the true offset by the network/queue delay, so the largest recent sample
// is the best one: a larger sample replaces the estimate at once, a smaller one pulls it
// down only slowly (local clock drift), and a jump of more than 2 s (someone set the PC
// clock) is taken at once.

const JUMP_MS = 2000;
const DRIFT_GAIN = 0.02;

export class ServerClock {
  constructor(localNow = () => Date.now()) {
    this.localNow = localNow;
    this.offsetMs = 0;
    this.synced = false;
  }

  /** Feed one `server_time` (ISO string) from a hub message. */
  observe(serverTimeIso) {
    const server = Date.parse(serverTimeIso);
    if (!Number.isFinite(server)) return;
    const sample = server - this.localNow();
    if (!this.synced || sample > this.offsetMs || this.offsetMs - sample > JUMP_MS) {
      this.offsetMs = sample;
      this.synced = true;
    } else {
      this.offsetMs += (sample - this.offsetMs) * DRIFT_GAIN;
    }
  }

  /** Milliseconds since the epoch on the hub's clock. */
  now() {
    return this.localNow() + this.offsetMs;
  }
}

/** Parse an ISO time to epoch ms, or null. */
export function parseTime(iso) {
  if (iso === null || iso === undefined || iso === '') return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

const pad2 = (n) => (n < 10 ? '0' + n : String(n));

/** 65_000 -> "1:05", 3_723_000 -> "1:02:03". Negative values (clock skew) show as 0:00. */
export function fmtDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${m}:${pad2(s)}`;
}

/** Offset in the call in seconds -> "mm:ss" ("01:23"; "1:02:03" past an hour). */
export function fmtOffset(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${pad2(m)}:${pad2(s)}`;
}

/** Short human age for the connection badge, via the translation function `t`. */
export function fmtAge(ms, t) {
  const total = Math.max(0, Math.floor(ms / 1000));
  if (total < 60) return t('unit.age.s', { s: total });
  if (total < 3600) return t('unit.age.m', { m: Math.floor(total / 60), s: pad2(total % 60) });
  return t('unit.age.h', { h: Math.floor(total / 3600), m: pad2(Math.floor((total % 3600) / 60)) });
}

/** Alert duration: "4.2 s" under a minute, else "m:ss". */
export function fmtSeconds(seconds, t) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  if (seconds < 60) return t('unit.seconds', { n: seconds < 10 ? seconds.toFixed(1) : Math.round(seconds) });
  return fmtDuration(seconds * 1000);
}

/** Local wall-clock time of day, HH:MM:SS, for alert rows. */
export function fmtTimeOfDay(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}
