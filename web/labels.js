// Translated labels for hub values (states, severities, alert kinds and details).
// Shared by the tiles and the alerts panel so both say the same thing.

import { t, tOr, hasKey } from './i18n.js';
import { fmtDuration } from './clock.js';

export function stateLabel(state) {
  return hasKey(`state.${state}`) ? t(`state.${state}`) : state || t('state.unknown');
}

export function stateShortLabel(state) {
  return hasKey(`state.short.${state}`) ? t(`state.short.${state}`) : stateLabel(state);
}

export function severityLabel(sev) {
  return sev ? tOr('severity.', sev) : '';
}

export function severityShortLabel(sev) {
  return sev ? tOr('severity.short.', sev) : '';
}

export function kindLabel(kind) {
  return tOr('alert.kind.', kind);
}

function whoLabel(who) {
  return tOr('who.', who);
}

/** One line describing what an alert is about, per kind. */
export function alertDetail(alert) {
  const d = alert?.detail || {};
  switch (alert?.kind) {
    case 'overtalk': {
      if (!d.interrupter) return '';
      if (d.interrupter === 'customer' && (d.interrupted ?? 'agent') === 'agent') return t('detail.overtalk.customer');
      if (d.interrupter === 'agent' && (d.interrupted ?? 'customer') === 'customer') return t('detail.overtalk.agent');
      return t('detail.overtalk.other', { interrupter: whoLabel(d.interrupter), interrupted: whoLabel(d.interrupted) });
    }
    case 'keyword': {
      if (d.not_said) { // a mandatory phrase (the recording notice) missing, or said too late
        const category = d.category ? tOr('category.', d.category) : d.rule;
        return Number.isFinite(d.said_at_s)
          ? t('detail.not_said.late', { category, at: fmtDuration(d.said_at_s * 1000) })
          : t('detail.not_said', { category, within: fmtThreshold(d.within_s) });
      }
      if (!d.phrase) return d.rule ? t('detail.keyword.rule', { rule: d.rule, category: tOr('category.', d.category) }) : '';
      const phrase = d.speaker ? t('detail.keyword', { phrase: d.phrase, speaker: whoLabel(d.speaker) }) : `“${d.phrase}”`;
      return phrase;
    }
    case 'state':
      if (!d.state) return '';
      return t('detail.state', {
        state: stateLabel(d.state),
        threshold: fmtThreshold(d.threshold_s),
      });
    default:
      return '';
  }
}

function fmtThreshold(seconds) {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds >= 60 && seconds % 60 === 0) return t('unit.minutes', { n: seconds / 60 });
  if (seconds < 60) return t('unit.seconds', { n: seconds });
  return fmtDuration(seconds * 1000);
}

/** Second detail line for keyword alerts: the rule and its category. */
export function alertRuleLine(alert) {
  const d = alert?.detail || {};
  if (alert?.kind !== 'keyword' || !d.rule || !d.phrase) return '';
  return t('detail.keyword.rule', { rule: d.rule, category: d.category ? tOr('category.', d.category) : '—' });
}
