// Sign-in page: POST JSON {username, password} to /login; 200 -> go to the wall,
// 401 {"error": "bad_credentials"} -> a translated message.

import { bindLangSelect, initI18n, onLangChange, t } from './i18n.js';

const form = document.getElementById('login-form');
const errorEl = document.getElementById('login-error');
const submit = document.getElementById('login-submit');
let errorKey = null;
let errorVars = null;

function showError(key, vars) {
  errorKey = key;
  errorVars = vars;
  errorEl.textContent = key ? t(key, vars) : '';
  errorEl.hidden = !key;
  errorEl.dataset.error = key || '';
}

/** Where to go after signing in: `?next=/path` when it is a local path, else the wall. */
function nextUrl() {
  const next = new URLSearchParams(location.search).get('next');
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

async function signIn(ev) {
  ev.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    (username ? form.password : form.username).focus();
    return;
  }
  submit.disabled = true;
  submit.textContent = t('login.working');
  showError(null);
  try {
    const res = await fetch('/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    if (res.ok) {
      location.assign(nextUrl());
      return;
    }
    let body = {};
    try { body = await res.json(); } catch { /* not JSON */ }
    if (res.status === 401 || body.error === 'bad_credentials') {
      showError('login.bad_credentials');
      form.password.value = '';
      form.password.focus();
    } else {
      showError('login.failed', { status: res.status });
    }
  } catch {
    showError('login.network');
  } finally {
    submit.disabled = false;
    submit.textContent = t('login.submit');
  }
}

// handle the form at once: a click while the strings still load must not post it natively
form.addEventListener('submit', signIn);
await initI18n();
bindLangSelect(document.getElementById('lang'));
onLangChange(() => showError(errorKey, errorVars));
if (new URLSearchParams(location.search).get('error') === 'bad_credentials') {
  showError('login.bad_credentials'); // the hub's answer to a form posted without this script
}
