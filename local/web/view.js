// The live view of local mode: reads the controller's API (/v1/nodes, /v1/tasks, /v1/migrations,
// /v1/reservations, and the forecaster's risk through /ui/risk) and follows its event stream
// (/v1/event/stream, ndjson). An event re-reads the state at once; a steady poll follows the steps of a
// migration in flight, which the stream does not carry.
'use strict';

(() => {
  const POLL_MS = 1000;
  const KEPT_EVENTS = 200;
  const SHOWN_MIGRATIONS = 30;
  const STEP_COLOURS = {
    'left-rotation': '#f0b429',
    'handed-over': '#4c6ef5',
    'restoring-from-buddy': '#ae3ec9',
    restored: '#15aabf',
    'joined-rotation': '#40c057',
    'cleaned-up': '#82c91e',
    done: '#2b8a3e',
    'rolled-back': '#868e96',
    failed: '#343a40',
  };
  const MODES = ['auto', 'stop-and-copy', 'pre-copy', 'post-copy'];

  const state = { nodes: [], tasks: {}, migrations: [], reservations: [], risk: { forecaster: null }, events: [] };
  let lastIndex = 0;

  /** A DOM element: its attributes (`style` as an object), its children as nodes or text (never parsed as HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === 'style') Object.assign(node.style, value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
    }
    return node;
  }

  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  const megabytes = (bytes) => `${(bytes / 1048576).toFixed(1)} MB`;

  function describe(event) {
    switch (event.type) {
      case 'node-joined':
        return `${event.node} joined (pool ${event.pool}, class ${event.nodeClass})`;
      case 'node-left':
        return `${event.node} left${event.preempted ? ', pre-empted' : ''}: ${event.detail}`;
      case 'drain-started':
        return `${event.node} draining: ${event.detail}`;
      case 'drain-complete':
        return `${event.node} drained`;
      case 'drain-canceled':
        return `${event.node} drain canceled`;
      case 'task-restored-from-checkpoint':
        return `${event.taskKey} lost on ${event.lostOn}, restored on ${event.node} from ${event.buddy}'s checkpoint (${event.checkpointAgeMs} ms old)`;
      default:
        return JSON.stringify(event);
    }
  }

  /**
   * Each node's latest drain from the event log: its reason (the forecaster's own words when it drained) and
   * whether it finished, which the controller's node flags do not tell (a drained node stays fenced, as in Nomad).
   */
  function drains() {
    const drains = new Map();
    for (const { event } of state.events) {
      if (event.type === 'drain-started') drains.set(event.node, { reason: event.detail, complete: false });
      if (event.type === 'drain-complete' && drains.has(event.node)) drains.get(event.node).complete = true;
      if (event.type === 'drain-canceled' || event.type === 'node-joined') drains.delete(event.node);
    }
    return drains;
  }

  function renderNodes() {
    const risks = new Map((state.risk.nodes || []).map((r) => [r.node, r]));
    const drained = drains();
    const rows = state.nodes.map((n) => {
      const risk = risks.get(n.name);
      const drain = n.eligible ? undefined : drained.get(n.name);
      const eligibility = n.eligible
        ? 'eligible'
        : !n.draining
          ? 'ineligible'
          : drain && drain.complete
            ? 'drained'
            : 'draining';
      const reason = drain ? drain.reason : undefined;
      return el(
        'tr',
        { 'data-node': n.name, 'data-eligibility': eligibility },
        el('td', {}, el('b', {}, n.name)),
        el('td', {}, n.address),
        el('td', { class: n.healthy ? 'good' : 'bad' }, n.healthy ? 'healthy' : 'unhealthy'),
        el(
          'td',
          { class: n.eligible ? 'good' : 'warn' },
          eligibility,
          reason ? el('div', { class: 'muted' }, reason) : null,
        ),
        el('td', {}, `${n.tasks} / ${n.capacity}`),
        el(
          'td',
          { class: risk && risk.phase !== 'healthy' ? 'bad' : '' },
          risk && risk.risk !== null ? `${risk.risk.toFixed(2)} (${risk.phase})` : el('span', { class: 'muted' }, '–'),
        ),
      );
    });
    document.querySelector('#nodes tbody').replaceChildren(...rows);
  }

  function renderTasks() {
    const rows = Object.entries(state.tasks).map(([key, t]) =>
      el(
        'tr',
        { 'data-task': key, 'data-node': t.node },
        el('td', {}, el('b', {}, key)),
        el('td', {}, t.node),
        el('td', { class: 'muted' }, t.taskId),
        el('td', { class: 'muted' }, (t.service.argv || []).join(' ')),
      ),
    );
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'no chained tasks')));
    document.querySelector('#tasks tbody').replaceChildren(...rows);
    const held = state.reservations.map((r) =>
      el(
        'div',
        { 'data-reservation': r.id },
        `${r.id}: room on ${r.targets.join(', ')} for ${r.tasks} task(s) of ${r.node}`,
      ),
    );
    document.getElementById('reservations').replaceChildren(...(held.length > 0 ? held : ['none held']));
  }

  /**
   * One migration as a bar over its own duration: a segment per journaled step (the work that led to it), and
   * the freeze hatched where it ended (the hand-over, or the restore for post-copy, whose source stays frozen
   * until its last page left).
   */
  function migrationRow(m) {
    const finished = m.step === 'done' || m.step === 'rolled-back' || m.step === 'failed';
    const start = m.createdAtUnixMs;
    const end = finished ? m.updatedAtUnixMs : Math.max(Date.now(), m.updatedAtUnixMs);
    const span = Math.max(end - start, 1);
    const pct = (t) => `${(Math.min(Math.max(t - start, 0), span) / span) * 100}%`;
    const segments = [];
    let from = start;
    const steps = Object.entries(m.stepsAtUnixMs || {}).sort((a, b) => a[1] - b[1]);
    for (const [step, at] of steps) {
      if (at > from) {
        segments.push(
          el('div', {
            class: 'step',
            title: `${step}: ${at - from} ms`,
            style: {
              left: pct(from),
              width: `calc(${pct(at)} - ${pct(from)})`,
              background: STEP_COLOURS[step] || '#9aa5b8',
            },
          }),
        );
      }
      from = Math.max(from, at);
    }
    const frozenUntil = m.lazyWindowMs !== undefined ? m.stepsAtUnixMs.restored : m.stepsAtUnixMs['handed-over'];
    if (m.freezeMs !== undefined && frozenUntil !== undefined) {
      segments.push(
        el('div', {
          class: 'freeze',
          title: `frozen ${m.freezeMs} ms`,
          style: {
            left: pct(frozenUntil - m.freezeMs),
            width: `calc(${pct(frozenUntil)} - ${pct(frozenUntil - m.freezeMs)})`,
          },
        }),
      );
    }
    const outcome = finished ? m.step : `in flight: ${m.step}`;
    return el(
      'div',
      {
        class: 'migration',
        'data-migration': m.id,
        'data-task': m.taskKey,
        'data-step': m.step,
        'data-freeze-ms': m.freezeMs,
      },
      el(
        'div',
        {},
        el('b', {}, m.taskKey),
        ` ${m.source.node} → ${m.target.node}`,
        el('div', { class: 'muted' }, `${clock(start)} · ${MODES[m.mode] || m.mode}`),
      ),
      el('div', { class: 'bar' }, segments),
      el(
        'div',
        {},
        el('span', { class: m.step === 'done' ? 'good' : finished ? 'bad' : 'warn' }, outcome),
        m.freezeMs !== undefined ? ` · frozen ${m.freezeMs} ms` : '',
        el(
          'div',
          { class: 'muted' },
          `${end - start} ms in all`,
          m.wireBytes !== undefined ? ` · ${megabytes(m.wireBytes)} sent` : '',
          m.error ? ` · ${m.error.code}: ${m.error.message}` : '',
        ),
      ),
    );
  }

  function renderMigrations() {
    const shown = [...state.migrations]
      .sort((a, b) => b.createdAtUnixMs - a.createdAtUnixMs)
      .slice(0, SHOWN_MIGRATIONS);
    document
      .getElementById('migrations')
      .replaceChildren(
        ...(shown.length > 0 ? shown.map(migrationRow) : [el('div', { class: 'muted' }, 'none yet: drain a node')]),
      );
  }

  function renderForecaster() {
    const risk = state.risk;
    const status = document.getElementById('forecaster');
    if (risk.forecaster === null) {
      status.textContent =
        'No forecaster runs: start local mode with npm start -- -forecaster DIR to see risk and its decisions.';
    } else if (risk.error !== undefined) {
      status.textContent = `The forecaster at ${risk.forecaster} does not answer: ${risk.error}`;
    } else {
      status.textContent = `Model ${risk.model ? risk.model.version : '(none loaded yet)'}, at ${risk.forecaster}`;
    }
    const decisions = (risk.nodes || [])
      .flatMap((n) => n.decisions || [])
      .sort((a, b) => b.atMs - a.atMs)
      .slice(0, 50)
      .map((d) =>
        el(
          'li',
          { 'data-decision': d.id, 'data-action': d.action },
          `${clock(d.atMs)} `,
          el('b', {}, `${d.action} ${d.node}`),
          ` risk ${d.risk.toFixed(2)}`,
          d.level !== undefined ? ` (${d.level}${d.threshold !== undefined ? ` ≥ ${d.threshold}` : ''})` : '',
          el('div', { class: 'muted' }, d.reasons.join('; ')),
        ),
      );
    document.getElementById('decisions').replaceChildren(...decisions);
  }

  function renderEvents() {
    const items = state.events
      .slice()
      .reverse()
      .map(({ index, event }) =>
        el('li', { 'data-index': index, 'data-type': event.type }, `${clock(event.timeMs)} ${describe(event)}`),
      );
    document.getElementById('events').replaceChildren(...items);
  }

  function renderLegend() {
    const steps = Object.entries(STEP_COLOURS).map(([step, colour]) =>
      el('span', {}, el('i', { style: { background: colour } }), step),
    );
    steps.push(el('span', {}, el('i', { class: 'freeze' }), 'frozen (lower lane)'));
    document.getElementById('legend').replaceChildren(...steps);
  }

  async function json(path) {
    const res = await fetch(path, { cache: 'no-store' });
    if (!res.ok) throw new Error(`${path} answered ${res.status}`);
    return res.json();
  }

  let refreshing = false;
  let again = false;
  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      [state.nodes, state.tasks, state.migrations, state.reservations, state.risk] = await Promise.all([
        json('/v1/nodes'),
        json('/v1/tasks'),
        json('/v1/migrations'),
        json('/v1/reservations'),
        json('/ui/risk'),
      ]);
      renderNodes();
      renderTasks();
      renderMigrations();
      renderForecaster();
      document.getElementById('updated').textContent = `updated ${clock(Date.now())}`;
    } catch (err) {
      document.getElementById('updated').textContent = `not updated: ${err.message}`;
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        void refresh();
      }
    }
  }

  function setLive(up) {
    const live = document.getElementById('live');
    live.className = up ? 'up' : 'down';
    live.textContent = up ? `live (event ${lastIndex})` : 'reconnecting…';
  }

  function onMessage(message) {
    if (message.Index === undefined) return; // a heartbeat
    lastIndex = message.Index;
    state.events.push({ index: message.Index, event: message.Event });
    if (state.events.length > KEPT_EVENTS) state.events.shift();
    setLive(true);
    renderEvents();
    renderNodes();
    void refresh();
  }

  /** The controller's ndjson event stream, resumed from the last index seen whenever it breaks. */
  async function follow() {
    for (;;) {
      try {
        const res = await fetch(`/v1/event/stream?index=${lastIndex}`, { cache: 'no-store' });
        if (!res.ok || res.body === null) throw new Error(`event stream answered ${res.status}`);
        setLive(true);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffered = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffered += decoder.decode(value, { stream: true });
          let newline;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (line !== '') onMessage(JSON.parse(line));
          }
        }
      } catch {
        // The controller went away or restarted: say so, and try again shortly.
      }
      setLive(false);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  renderLegend();
  void refresh();
  setInterval(() => void refresh(), POLL_MS);
  void follow();
})();
