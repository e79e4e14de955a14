// The monitoring audit trail: GET /api/audit, shown as a table (read-only by design).

import { applyI18n, bindLangSelect, getLang, initI18n, onLangChange, t } from './i18n.js';

const form = document.getElementById('audit-filter');
const body = document.querySelector('#audit-table tbody');
const empty = document.getElementById('audit-empty');
const errorEl = document.getElementById('audit-error');
let rows = [];

function fmtTime(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString(getLang(), { dateStyle: 'short', timeStyle: 'medium' });
}

function fmtDuration(a, b) {
  const s = Math.max(0, Math.round((new Date(b || Date.now()) - new Date(a)) / 1000));
  const m = Math.floor(s / 60);
  return m ? `${m}:${String(s % 60).padStart(2, '0')}` : `${s} s`;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function render() {
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.open = String(!r.ended_at);
    tr.dataset.session = r.id;
    const mode = t(`listen.mode.${r.mode}`) + (r.spot_check ? ` · ${t('audit.spot_check')}` : '');
    tr.append(
      cell(fmtTime(r.started_at)),
      cell(r.ended_at ? fmtTime(r.ended_at) : t('audit.running')),
      cell(fmtDuration(r.started_at, r.ended_at)),
      cell(`${r.display_name} (${r.username})`),
      cell(r.agent_id),
      cell(r.call_id),
      cell(mode, `mode-${r.mode}`),
      cell(r.reason || '—'),
      cell(r.end_reason || ''),
    );
    return tr;
  }));
  empty.hidden = rows.length > 0;
}

async function load() {
  const params = new URLSearchParams();
  const agent = form.agent.value.trim();
  if (agent) params.set('agent_id', agent);
  if (form.since.value) params.set('since', new Date(`${form.since.value}T00:00:00`).toISOString());
  const res = await fetch(`/api/audit?${params}`, { credentials: 'same-origin' });
  if (res.status === 401) { location.href = `/login?next=${encodeURIComponent('/audit')}`; return; }
  const data = await res.json().catch(() => ({}));
  errorEl.hidden = res.ok;
  if (!res.ok) {
    errorEl.textContent = res.status === 403 ? t('audit.forbidden') : (data.error || String(res.status));
    rows = [];
  } else {
    rows = data.sessions || [];
  }
  render();
}

await initI18n();
bindLangSelect(document.getElementById('lang'));
onLangChange(() => { applyI18n(document); render(); });
form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
await load();
setInterval(load, 15000);
