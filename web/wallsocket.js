// The wall's WebSocket to the hub (/ws/wall), with reconnection.
//
// Connection states reported through onStatus(state, info):
//   'connecting'   first connection of the page, no data yet
//   'live'         a snapshot has arrived on the current socket
//   'reconnecting' socket lost; retrying with backoff 0.5 s -> 5 s (data is stale)
//   'offline'      lost for more than OFFLINE_AFTER_MS, or the browser reports no network
//
// Close codes from the hub: 4408 (too slow, resync) -> reconnect at once and start from
// the new snapshot; 4401 (session ended) -> onUnauthorized().

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const OFFLINE_AFTER_MS = 20_000;
const RESYNC_SPIN_MS = 2000;
const STALL_MS = 25_000; // 2.5 hub heartbeats

export const CLOSE_RESYNC = 4408;
export const CLOSE_UNAUTHORIZED = 4401;

export class WallSocket {
  /**
   * @param {object} o
   * @param {string} o.url
   * @param {(msg: object) => void} o.onMessage
   * @param {(state: string, info: object) => void} o.onStatus
   * @param {() => void} o.onUnauthorized
   * @param {() => Promise<boolean>} [o.checkSession]  resolves false when the session is gone
   */
  constructor({ url, onMessage, onStatus, onUnauthorized, checkSession }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onUnauthorized = onUnauthorized;
    this.checkSession = checkSession || (async () => true);
    this.ws = null;
    this.state = 'connecting';
    this.backoff = BACKOFF_MIN_MS;
    this.retryTimer = 0;
    this.lostAt = null; // when the data stopped being live (local ms)
    this.lastMessageAt = null;
    this.stopped = false;
    this.reconnects = 0;
    this.failuresWithoutOpen = 0;
    this.lastResyncAt = -Infinity;

    // The hub sends at least a heartbeat every 10 s: silence for longer than STALL_MS means a
    // socket that looks open but carries nothing (a dead proxy, a stalled hub). Start over.
    setInterval(() => this.watchdog(), 5000);
    window.addEventListener('online', () => this.retryNow());
    window.addEventListener('offline', () => { if (this.state !== 'live') this.setState('offline'); });
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, 'page closed');
  }

  retryNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  watchdog() {
    if (this.stopped || this.state !== 'live' || !this.ws) return;
    if (Date.now() - (this.lastMessageAt ?? Date.now()) < STALL_MS) return;
    console.warn('floorwatch: no message from the hub for', STALL_MS / 1000, 's; reconnecting');
    const stale = this.ws;
    this.ws = null;
    stale.onclose = null;
    stale.close();
    this.lostAt = Date.now();
    this.reconnects++;
    this.setState('reconnecting');
    this.connect();
  }

  setState(state) {
    this.state = state;
    this.onStatus(state, { lostAt: this.lostAt, lastMessageAt: this.lastMessageAt, reconnects: this.reconnects });
  }

  connect() {
    this.retryTimer = 0;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.error('floorwatch: cannot open wall socket', err);
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.failuresWithoutOpen = 0;
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('floorwatch: ignoring a non-JSON wall message');
        return;
      }
      this.lastMessageAt = Date.now();
      if (msg.type === 'snapshot') {
        this.backoff = BACKOFF_MIN_MS;
        this.lostAt = null;
        this.onMessage(msg);
        this.setState('live');
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.state === 'live') this.lostAt = Date.now();
      if (this.lostAt === null) this.lostAt = Date.now();
      if (ev.code === CLOSE_UNAUTHORIZED) {
        this.stopped = true;
        this.onUnauthorized();
        return;
      }
      this.reconnects++;
      if (ev.code === CLOSE_RESYNC) {
        // Too slow: the hub dropped us. Our data is stale; take a fresh snapshot at once
        // (but back off if it keeps happening, so a wall that cannot keep up does not spin).
        const now = Date.now();
        const again = now - this.lastResyncAt < RESYNC_SPIN_MS;
        this.lastResyncAt = now;
        if (!again) {
          this.setState('reconnecting');
          this.connect();
          return;
        }
      }
      if (!opened) {
        this.failuresWithoutOpen++;
        // A refused upgrade (e.g. HTTP 401) shows up as 1006 without an open: ask the REST API.
        if (this.failuresWithoutOpen >= 2) {
          this.checkSession().then((ok) => {
            if (!ok) {
              this.stopped = true;
              this.onUnauthorized();
            }
          }, () => {});
        }
      }
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    const lostFor = Date.now() - (this.lostAt ?? Date.now());
    const offline = navigator.onLine === false || lostFor >= OFFLINE_AFTER_MS;
    this.setState(offline ? 'offline' : this.state === 'connecting' && this.reconnects <= 1 ? 'connecting' : 'reconnecting');
    const delay = this.backoff * (0.8 + Math.random() * 0.4);
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Age of the data shown, in ms (0 while live). */
  dataAge(now = Date.now()) {
    return this.state === 'live' || this.lostAt === null ? 0 : now - this.lostAt;
  }
}
