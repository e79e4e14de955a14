// One translation table (strings.json) for every user-visible string.
//
//   await initI18n();            // loads strings.json, picks the language
//   t('state.on_call')           // -> "On call" / "通话中"
//   t('tile.overtalk', {n: 3})   // -> "Overtalk 3"
//
// Language: `?lang=` in the URL, else the choice saved in localStorage, else
// navigator.language (zh* -> zh-CN, anything else -> en).
// Static markup is translated through attributes:
//   data-i18n="key"              -> textContent
//   data-i18n-title="key"        -> title
//   data-i18n-aria-label="key"   -> aria-label
//   data-i18n-placeholder="key"  -> placeholder
//   <html data-i18n-doc-title="key"> -> document.title

export const LANGS = ['en', 'zh-CN'];
const STORAGE_KEY = 'fw.lang';

let table = { en: {} };
let lang = 'en';
const listeners = new Set();

/** Pick a supported language from an explicit choice or a browser language tag. */
export function pickLang(choice, browserLang) {
  if (LANGS.includes(choice)) return choice;
  return /^zh/i.test(browserLang || '') ? 'zh-CN' : 'en';
}

export async function initI18n() {
  try {
    const res = await fetch(new URL('./strings.json', import.meta.url), { cache: 'no-cache' });
    if (res.ok) table = await res.json();
  } catch (err) {
    console.error('floorwatch: could not load strings.json', err);
  }
  const urlLang = new URLSearchParams(location.search).get('lang');
  lang = pickLang(urlLang || readStored(), navigator.language);
  document.documentElement.lang = lang;
  applyI18n(document);
  return lang;
}

function readStored() {
  try { return localStorage.getItem(STORAGE_KEY); } catch { return null; }
}

export function getLang() { return lang; }

/** Translate `key`, filling `{name}` placeholders from `vars`. Falls back to English, then the key. */
export function t(key, vars) {
  let s = table[lang]?.[key];
  if (s === undefined) s = table.en?.[key];
  if (s === undefined) return key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined || vars[k] === null ? m : String(vars[k])));
  return s;
}

/** True when the table has `key` (for optional translations such as break reasons). */
export function hasKey(key) {
  return table[lang]?.[key] !== undefined || table.en?.[key] !== undefined;
}

/** Translate `prefix + value` when known, else return the raw value (e.g. an unknown break reason). */
export function tOr(prefix, value) {
  if (value === null || value === undefined || value === '') return '';
  const key = prefix + value;
  return hasKey(key) ? t(key) : String(value);
}

export function setLang(next) {
  if (!LANGS.includes(next) || next === lang) return;
  lang = next;
  try { localStorage.setItem(STORAGE_KEY, next); } catch { /* private mode: not saved */ }
  document.documentElement.lang = lang;
  applyI18n(document);
  for (const fn of listeners) fn(lang);
}

/** Call `fn(lang)` after every language switch. Returns an unsubscribe function. */
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const ATTRS = [
  ['i18n-title', 'title'],
  ['i18n-aria-label', 'aria-label'],
  ['i18n-placeholder', 'placeholder'],
];

export function applyI18n(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const [data, attr] of ATTRS) {
    for (const el of root.querySelectorAll(`[data-${data}]`)) el.setAttribute(attr, t(el.getAttribute(`data-${data}`)));
  }
  const titleKey = document.documentElement.dataset.i18nDocTitle;
  if (titleKey) document.title = t(titleKey);
}

/** Fill a <select> with the supported languages and keep it in step with the current one. */
export function bindLangSelect(select) {
  select.replaceChildren(...LANGS.map((code) => {
    const opt = document.createElement('option');
    opt.value = code;
    opt.textContent = t(`lang.${code}`);
    opt.lang = code;
    return opt;
  }));
  select.value = lang;
  select.addEventListener('change', () => setLang(select.value));
  onLangChange((l) => { select.value = l; });
}
