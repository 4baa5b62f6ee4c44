// glusterpy's web console: one page on glusterpyd's REST API and nothing else.
// Every button is an API call the CLI makes too; the token the person signs in
// with goes with each call, so the console can do exactly what that token can.
// htm + Preact (vendor/VENDOR.md): components without a build step.
import { html, render, useState, useEffect, useRef, useCallback } from './vendor/htm-preact-standalone.mjs';

const TOKEN_KEY = 'glusterpy-console-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';
let onSignedOut = () => {};

class ApiError extends Error {
  constructor(status, doc) {
    super((doc && doc.error) || `HTTP ${status}`);
    this.status = status;
    this.doc = doc || {};
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let doc = {};
  try { doc = await resp.json(); } catch (e) { doc = {}; }
  if (resp.status === 401 && token) onSignedOut('The token is no longer valid: sign in again.');
  if (!resp.ok) throw new ApiError(resp.status, doc);
  return doc;
}

const q = encodeURIComponent;

// -- small helpers ------------------------------------------------------------

function usePoll(fn, ms, deps = []) {
  // One request at a time: a tick while the last is still out is skipped (a
  // slow answer - a peer that does not answer takes seconds - must still
  // show, not be dropped for a newer one that is just as slow).  Answers
  // from before a change of `deps` are dropped.
  const [state, setState] = useState({ data: null, error: null });
  const gen = useRef(0);
  const busy = useRef(false);
  const run = useCallback(async (force) => {
    if (busy.current && !force) return;
    const mine = gen.current;
    busy.current = true;
    try {
      const data = await fn();
      if (mine === gen.current) setState({ data, error: null });
    } catch (e) {
      if (mine === gen.current) setState(s => ({ data: s.data, error: e.message }));
    } finally {
      busy.current = false;
    }
  }, deps);
  useEffect(() => {
    gen.current++;
    run(true);
    if (!ms) return undefined;
    const id = setInterval(() => run(false), ms);
    return () => clearInterval(id);
  }, [run]);
  return [state.data, state.error, () => run(true)];
}

let notify = () => {};
function Notice() {
  const [text, setText] = useState('');
  useEffect(() => {
    let timer;
    notify = t => { setText(t); clearTimeout(timer); timer = setTimeout(() => setText(''), 6000); };
  }, []);
  return html`<div class="notice" id="notice" role="status" aria-live="polite">${text}</div>`;
}

function ErrorBox({ error }) {
  return error ? html`<p class="error" role="alert">${error}</p>` : null;
}

function bytes(n) {
  if (n == null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function secs(s) {
  if (s == null) return '';
  s = Math.round(s);
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

function Progress({ value, label }) {
  const pct = value == null ? null : Math.round(value * 100);
  return html`<div class="progress" role="progressbar" aria-label=${label} aria-valuemin="0" aria-valuemax="100"
    aria-valuenow=${pct == null ? undefined : pct} aria-valuetext=${pct == null ? 'counting' : `${pct}%`}>
    <span style=${`width:${pct || 0}%`}></span></div>`;
}

// A button that calls the API, shows it is busy, and reports the outcome.
function Act({ label, call, done, danger, primary, id }) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    setBusy(true);
    try {
      await call();
      notify(`${label}: done`);
      if (done) done();
    } catch (e) {
      notify(`${label}: ${e.message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" id=${id} class=${danger ? 'danger' : primary ? 'primary' : ''} disabled=${busy}
    onClick=${click}>${busy ? `${label}\u2026` : label}</button>`;
}

function Heading({ children }) {
  const ref = useRef();
  useEffect(() => { if (ref.current) ref.current.focus(); }, []);
  return html`<h1 tabindex="-1" ref=${ref}>${children}</h1>`;
}

// -- sign-in ------------------------------------------------------------------

function SignIn({ onIn, message }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(message || '');
  const submit = async ev => {
    ev.preventDefault();
    token = value.trim();
    try {
      const who = await api('GET', '/api/v1/whoami');
      sessionStorage.setItem(TOKEN_KEY, token);
      onIn(who);
    } catch (e) {
      token = '';
      setError(e.status === 401 ? 'That token is not valid on this node.' : e.message);
    }
  };
  return html`<main class="signin">
    <${Heading}>Sign in to glusterpy<//>
    <form class="stack card" onSubmit=${submit}>
      <div>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required
          value=${value} onInput=${e => setValue(e.target.value)} aria-describedby="token-help" />
        <p id="token-help" class="muted">Make one on a node, as root:
          <code>glusterpy token create NAME --role admin</code> (or <code>--role read-only</code>).</p>
      </div>
      <${ErrorBox} error=${error} />
      <div><button class="primary" type="submit">Sign in</button></div>
    </form>
  </main>`;
}

// -- dashboard ----------------------------------------------------------------

function Dashboard() {
  const [data, error] = usePoll(async () => {
    const [pool, vols, status, log] = await Promise.all([
      api('GET', '/api/v1/pool'), api('GET', '/api/v1/volumes'),
      api('GET', '/api/v1/status'), api('GET', '/api/v1/log?limit=8')]);
    return { pool: pool.pool, volumes: vols.volumes, status: status.volumes, log: log.entries };
  }, 2000);
  // heal info connects to every brick: asked less often than the rest
  const [heals] = usePoll(async () => {
    const vols = (await api('GET', '/api/v1/volumes')).volumes.filter(v => v.status === 'Started' && v.replica > 1);
    const out = [];
    for (const v of vols) {
      try {
        const info = await api('GET', `/api/v1/volumes/${q(v.name)}/heal/info`);
        const entries = info.bricks.flatMap(b => b.entries || []);
        out.push({ volume: v.name, pending: entries.length, splitBrain: entries.filter(e => /split/i.test(e.status || '')).length });
      } catch (e) { out.push({ volume: v.name, error: e.message }); }
    }
    return out;
  }, 10000);
  if (!data) return html`<${Heading}>Dashboard<//><${ErrorBox} error=${error} /><p>Loading\u2026</p>`;
  const up = data.pool.filter(n => n.connected), down = data.pool.filter(n => !n.connected);
  const byState = {};
  for (const v of data.volumes) byState[v.status] = (byState[v.status] || 0) + 1;
  const bricks = data.status.flatMap(s => s.bricks.map(b => ({ ...b, volume: s.name })));
  const bricksDown = bricks.filter(b => !b.online);
  const tasks = data.status.flatMap(s => Object.entries(s.tasks || {}).map(([kind, t]) => ({ volume: s.name, kind, ...t })));
  return html`<${Heading}>Dashboard<//>
    <${ErrorBox} error=${error && `Could not refresh: ${error}`} />
    <div class="cards">
      <section class="card" aria-labelledby="c-nodes"><h2 id="c-nodes">Nodes</h2>
        <div class="big"><span class="ok" id="nodes-up">${up.length} up</span>${down.length ? html`, <span class="bad" id="nodes-down">${down.length} down</span>` : ''}</div>
        <ul id="node-list">${data.pool.map(n => html`<li data-node=${n.hostname} data-state=${n.connected ? 'up' : 'down'}>${n.hostname}${n.hostname === 'localhost' ? ' (this node)' : ''}:${' '}<span class=${n.connected ? 'ok' : 'bad'}>${n.connected ? 'up' : 'down'}</span></li>`)}</ul></section>
      <section class="card" aria-labelledby="c-vols"><h2 id="c-vols">Volumes</h2>
        <div class="big">${data.volumes.length}</div>
        <p>${Object.entries(byState).map(([k, n]) => `${n} ${k.toLowerCase()}`).join(', ') || 'none yet'}</p></section>
      <section class="card" aria-labelledby="c-bricks"><h2 id="c-bricks">Bricks down</h2>
        <div class=${`big ${bricksDown.length ? 'bad' : 'ok'}`}>${bricksDown.length}</div>
        <p class="muted">of ${bricks.length} in started volumes</p>
        <ul>${bricksDown.slice(0, 5).map(b => html`<li class="mono">${b.volume}: ${b.brick}</li>`)}</ul></section>
      <section class="card" aria-labelledby="c-tasks"><h2 id="c-tasks">Running tasks</h2>
        <div class="big">${tasks.length}</div>
        <ul>${tasks.map(t => html`<li><a href="#/tasks">${t.kind} on ${t.volume}</a></li>`)}</ul></section>
      <section class="card" aria-labelledby="c-heal"><h2 id="c-heal">Self-heal</h2>
        ${heals ? html`<div class=${`big ${heals.some(h => h.pending) ? 'warn' : 'ok'}`} id="heal-pending">${heals.reduce((n, h) => n + (h.pending || 0), 0)} pending</div>
          <p class=${heals.some(h => h.splitBrain) ? 'bad' : 'muted'} id="split-brains">${heals.reduce((n, h) => n + (h.splitBrain || 0), 0)} in split-brain</p>
          <ul>${heals.filter(h => h.pending || h.error).map(h => html`<li><a href=${`#/volumes/${q(h.volume)}`}>${h.volume}</a>: ${h.error || `${h.pending} pending`}</li>`)}</ul>`
        : html`<p class="muted">checking\u2026</p>`}</section>
    </div>
    <h2>Capacity</h2>
    <${Capacity} bricks=${bricks} />
    <h2>Recent operations</h2>
    <${AuditTable} entries=${data.log.slice().reverse()} />`;
}

// Used and free space per volume (its bricks' file systems, each counted once
// per node) as bars, with the numbers in text for screen readers and copying.
function Capacity({ bricks }) {
  const vols = {};
  for (const b of bricks) {
    if (b.disk_total == null) continue;
    const v = vols[b.volume] = vols[b.volume] || { total: 0, free: 0, seen: new Set() };
    const fs = `${b.node}/${b.disk_fsid}`;
    if (v.seen.has(fs)) continue;   // three bricks on one disk are one disk's space
    v.seen.add(fs);
    v.total += b.disk_total; v.free += b.disk_free;
  }
  const rows = Object.entries(vols);
  if (!rows.length) return html`<p class="muted">No started volume reports its disks yet.</p>`;
  return html`<div class="table-wrap"><table id="capacity"><thead><tr><th scope="col">Volume</th><th scope="col">Used</th><th scope="col">Free</th><th scope="col">Use</th></tr></thead>
    <tbody>${rows.map(([name, v]) => {
      const used = v.total - v.free, share = v.total ? used / v.total : 0;
      return html`<tr><td>${name}</td><td>${bytes(used)}</td><td>${bytes(v.free)}</td>
        <td><${Progress} value=${share} label=${`${name}: ${Math.round(share * 100)}% used`} /></td></tr>`;
    })}</tbody></table></div>
    <p class="muted">The file systems of the volume's bricks, each counted once.</p>`;
}

// -- volumes ------------------------------------------------------------------

function SearchBox({ value, onChange, onSubmit }) {
  const [opts, setOpts] = useState({ start: 0, options: [] });
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(-1);
  const input = useRef();
  const asked = useRef(0);
  const complete = async text => {
    // one request a keystroke: only the answer to the latest may show
    const mine = ++asked.current;
    try {
      const c = await api('GET', `/api/v1/search/complete?q=${q(text)}`);
      if (mine !== asked.current) return;
      setOpts(c); setOpen(c.options.length > 0); setActive(-1);
    } catch (e) { setOpen(false); }
  };
  const accept = opt => {
    const text = value.slice(0, opts.start) + opt + ' ';
    // no stale list while the next one is asked for: Enter must not pick from it
    onChange(text); setOpen(false); setOpts({ start: text.length, options: [] }); setActive(-1);
    complete(text);
    input.current.focus();
  };
  const key = ev => {
    if (ev.key === 'ArrowDown' && opts.options.length) { ev.preventDefault(); setOpen(true); setActive(a => (a + 1) % opts.options.length); }
    else if (ev.key === 'ArrowUp' && open) { ev.preventDefault(); setActive(a => (a <= 0 ? opts.options.length : a) - 1); }
    else if ((ev.key === 'Enter' || ev.key === 'Tab') && open && active >= 0) { ev.preventDefault(); accept(opts.options[active]); }
    else if (ev.key === 'Escape') setOpen(false);
    else if (ev.key === 'Enter') { setOpen(false); onSubmit(); }
  };
  return html`<div class="combo">
    <label for="search">Search volumes</label>
    <input id="search" role="combobox" aria-autocomplete="list" aria-expanded=${open} aria-controls="search-options"
      aria-activedescendant=${active >= 0 ? `search-opt-${active}` : undefined} autocomplete="off" spellcheck="false"
      aria-describedby="search-help" ref=${input} value=${value}
      onInput=${e => { onChange(e.target.value); complete(e.target.value); }} onFocus=${e => complete(e.target.value)}
      onKeyDown=${key} onBlur=${() => setTimeout(() => setOpen(false), 150)} />
    ${open && html`<ul id="search-options" role="listbox" aria-label="Completions">${opts.options.map((o, i) => html`
      <li id=${`search-opt-${i}`} role="option" aria-selected=${i === active} onMouseDown=${e => { e.preventDefault(); accept(o); }}>${o}</li>`)}</ul>`}
    <p id="search-help" class="muted">For example <code>Volumes: name = vm* and type = replicate and status = started sortby name desc</code>;
      arrow keys pick a completion.</p>
  </div>`;
}

function Volumes({ who }) {
  const admin = who.role === 'admin';
  const [text, setText] = useState('Volumes: ');
  const [query, setQuery] = useState('Volumes: ');
  const [data, error, refresh] = usePoll(() => api('GET', `/api/v1/search?q=${q(query)}`), 3000, [query]);
  const [creating, setCreating] = useState(false);
  return html`<${Heading}>Volumes<//>
    <form class="row" role="search" onSubmit=${e => { e.preventDefault(); setQuery(text); }}>
      <div style="flex: 4 1 20rem"><${SearchBox} value=${text} onChange=${setText} onSubmit=${() => setQuery(text)} /></div>
      <div style="flex: 0 0 auto"><button type="submit">Search</button></div>
    </form>
    <${ErrorBox} error=${error} />
    ${admin && html`<p><button type="button" id="create-open" aria-expanded=${creating} onClick=${() => setCreating(!creating)}>
      ${creating ? 'Close the form' : 'Create a volume'}</button></p>`}
    ${admin && creating && html`<${CreateVolume} done=${() => { setCreating(false); refresh(); }} />`}
    <h2>${data ? `${data.volumes.length} volume${data.volumes.length === 1 ? '' : 's'}` : 'Loading\u2026'}
      ${data && html` <span class="muted mono">${data.query}</span>`}</h2>
    ${data && html`<div class="table-wrap"><table id="volume-table">
      <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Bricks</th>
        <th scope="col">Replica</th>${admin && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${data.volumes.map(v => html`<tr data-volume=${v.name}>
        <td><a href=${`#/volumes/${q(v.name)}`}>${v.name}</a></td><td>${v.type}</td>
        <td class=${v.status === 'Started' ? 'ok' : ''}>${v.status}</td><td>${v.bricks.length}</td><td>${v.replica}</td>
        ${admin && html`<td><${VolumeActions} vol=${v} done=${refresh} /></td>`}</tr>`)}</tbody></table></div>`}`;
}

function VolumeActions({ vol, done }) {
  const [confirming, setConfirming] = useState(false);
  const n = q(vol.name);
  if (confirming) {
    return html`<div class="actions" role="group" aria-label=${`Delete ${vol.name}?`}>
      <span>Delete ${vol.name} and its configuration?</span>
      <${Act} label=${`Delete ${vol.name}`} danger call=${() => api('DELETE', `/api/v1/volumes/${n}`)} done=${() => { setConfirming(false); done(); }} />
      <button type="button" onClick=${() => setConfirming(false)}>Cancel</button></div>`;
  }
  return html`<div class="actions">
    ${vol.status !== 'Started' && html`<${Act} label="Start" call=${() => api('POST', `/api/v1/volumes/${n}/start`, {})} done=${done} />`}
    ${vol.status === 'Started' && html`<${Act} label="Stop" call=${() => api('POST', `/api/v1/volumes/${n}/stop`, {})} done=${done} />`}
    ${vol.status !== 'Started' && html`<button type="button" class="danger" onClick=${() => setConfirming(true)}>Delete</button>`}
  </div>`;
}

const LAYOUTS = {
  distribute: { label: 'Distribute', count: false },
  replicate: { label: 'Replicate', count: 'Replica count', def: 3 },
  arbiter: { label: 'Replicate with an arbiter (replica 3 arbiter 1)', count: false },
  stripe: { label: 'Stripe', count: 'Stripe count', def: 2 },
  lv: { label: 'Device lv (bricks are LVM volume groups)', count: false },
};

function CreateVolume({ done }) {
  const [f, setF] = useState({ name: '', layout: 'replicate', count: 3, hosts: '', prefix: '/bricks', bricks: '', force: false });
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const set = k => e => setF({ ...f, [k]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });
  const layout = LAYOUTS[f.layout];
  const build = () => {
    // one brick per host, repeated until a whole set is there: the CLI's HOST:/PATH words
    const hosts = f.hosts.split(/[\s,]+/).filter(Boolean);
    if (!hosts.length || !f.name) { setError('Give the volume a name and at least one host to build the list.'); return; }
    const per = f.layout === 'arbiter' ? 3 : layout.count ? Number(f.count) : 1;
    const n = Math.max(per, hosts.length);
    const list = [];
    for (let i = 0; i < n; i++) list.push(`${hosts[i % hosts.length]}:${f.prefix.replace(/\/$/, '')}/${f.name}-${i + 1}`);
    setF({ ...f, bricks: list.join('\n') });
    setError('');
  };
  const submit = async ev => {
    ev.preventDefault();
    const body = { name: f.name.trim(), bricks: f.bricks.split('\n').map(s => s.trim()).filter(Boolean), force: f.force };
    if (f.layout === 'replicate') body.replica = Number(f.count);
    if (f.layout === 'stripe') body.stripe = Number(f.count);
    if (f.layout === 'arbiter') { body.replica = 3; body.arbiter = 1; }
    if (f.layout === 'lv') body.device = 'lv';
    setBusy(true);
    try {
      await api('POST', '/api/v1/volumes', body);
      notify(`Volume ${body.name} created`);
      done();
    } catch (e) { setError(e.message); } finally { setBusy(false); }
  };
  return html`<form class="stack" id="create-form" onSubmit=${submit}><fieldset class="stack"><legend>New volume</legend>
    <div><label for="c-name">Name</label><input id="c-name" required value=${f.name} onInput=${set('name')} /></div>
    <div class="row">
      <div><label for="c-layout">Layout</label><select id="c-layout" value=${f.layout} onChange=${e => setF({ ...f, layout: e.target.value, count: LAYOUTS[e.target.value].def || f.count })}>
        ${Object.entries(LAYOUTS).map(([k, l]) => html`<option value=${k}>${l.label}</option>`)}</select></div>
      ${layout.count && html`<div><label for="c-count">${layout.count}</label><input id="c-count" type="number" min="2" value=${f.count} onInput=${set('count')} /></div>`}
    </div>
    <div class="row">
      <div><label for="c-hosts">Hosts</label><input id="c-hosts" placeholder="node1 node2 node3" value=${f.hosts} onInput=${set('hosts')} /></div>
      <div><label for="c-prefix">Brick directory</label><input id="c-prefix" value=${f.prefix} onInput=${set('prefix')} /></div>
      <div style="flex: 0 0 auto"><button type="button" id="c-build" onClick=${build}>Build the brick list</button></div>
    </div>
    <div><label for="c-bricks">Bricks (HOST:/PATH, one a line, in replica-set order)</label>
      <textarea id="c-bricks" rows="4" required value=${f.bricks} onInput=${set('bricks')}></textarea></div>
    <label class="inline"><input type="checkbox" id="c-force" checked=${f.force} onChange=${set('force')} /> force (bricks on the root partition or several of a set on one host)</label>
    <${ErrorBox} error=${error} />
    <div><button class="primary" type="submit" id="c-submit" disabled=${busy}>Create</button></div>
  </fieldset></form>`;
}

function VolumePage({ name, who }) {
  const admin = who.role === 'admin';
  const n = q(name);
  const [vol, error, refresh] = usePoll(() => api('GET', `/api/v1/volumes/${n}`), 3000, [name]);
  const [status] = usePoll(async () => {
    try { return await api('GET', `/api/v1/volumes/${n}/status`); } catch (e) { return null; }
  }, 3000, [name]);
  if (!vol) return html`<${Heading}>Volume ${name}<//><${ErrorBox} error=${error} /><p>Loading\u2026</p>`;
  const rows = status ? status.bricks : vol.bricks.map(b => ({ brick: b.name }));
  return html`<${Heading}>Volume ${name}<//>
    <${ErrorBox} error=${error} />
    <dl class="cards">
      <div class="card"><dt class="muted">Type</dt><dd id="v-type">${vol.type}</dd></div>
      <div class="card"><dt class="muted">Status</dt><dd id="v-status">${vol.status}</dd></div>
      <div class="card"><dt class="muted">Transport</dt><dd>${vol.transport}</dd></div>
      <div class="card"><dt class="muted">Volume ID</dt><dd class="mono">${vol.id}</dd></div>
    </dl>
    ${admin && html`<h2>Actions</h2><${VolumeActions} vol=${vol} done=${refresh} />
      <div class="actions" style="margin-top:.5rem">
        <${Act} label="Rebalance" call=${() => api('POST', `/api/v1/volumes/${n}/rebalance`, { action: 'start' })} done=${() => { location.hash = '#/tasks'; }} />
        ${vol.replica > 1 && html`<${Act} label="Heal" call=${() => api('POST', `/api/v1/volumes/${n}/heal`, { op: 'index' })} />`}
      </div>`}
    <h2>Bricks</h2>
    <div class="table-wrap"><table id="brick-table"><thead><tr><th scope="col">Brick</th><th scope="col">Port</th><th scope="col">PID</th><th scope="col">Online</th><th scope="col">Disk used</th></tr></thead>
      <tbody>${rows.map(b => html`<tr data-brick=${b.brick}><td class="mono">${b.brick}</td><td>${b.port || ''}</td><td>${b.pid || ''}</td>
        <td class=${b.online ? 'ok' : 'bad'}>${status ? (b.online ? 'yes' : 'no') : 'volume not started'}</td>
        <td>${b.disk_total ? `${bytes(b.disk_total - b.disk_free)} of ${bytes(b.disk_total)}` : ''}</td></tr>`)}</tbody></table></div>
    ${admin && html`<${Bricks} vol=${vol} refresh=${refresh} />`}
    ${vol.status === 'Started' && html`<${Clients} vol=${vol} />`}
    ${vol.replica > 1 && vol.status === 'Started' && html`<${HealInfo} vol=${vol} admin=${admin} />`}
    <p><a href=${`#/profile/${n}`}>Profile of ${name}</a> \u00b7 <a href=${`#/audit?volume=${n}`}>Its audit log</a></p>
    <${Options} name=${name} admin=${admin} vol=${vol} refresh=${refresh} />`;
}

// volume status NAME clients: who is connected to each brick (the self-heal
// daemon and rebalance are clients too, as in GlusterFS)
function Clients({ vol }) {
  const n = q(vol.name);
  const [doc, error] = usePoll(() => api('GET', `/api/v1/volumes/${n}/status/clients`), 3000, [vol.name]);
  const rows = doc ? doc.bricks.flatMap(b => b.error ? [{ brick: b.brick, note: b.error }]
    : !b.online ? [{ brick: b.brick, note: 'brick offline' }]
    : b.clients.length ? b.clients.map(c => ({ brick: b.brick, c })) : [{ brick: b.brick, note: 'no client connected' }]) : [];
  return html`<h2>Clients</h2>
    <${ErrorBox} error=${error} />
    ${doc ? html`<div class="table-wrap"><table id="client-table"><thead><tr><th scope="col">Brick</th><th scope="col">Client address</th>
      <th scope="col">Process</th><th scope="col">Bytes read</th><th scope="col">Bytes written</th><th scope="col">Op-version</th></tr></thead>
      <tbody>${rows.map(r => r.c ? html`<tr data-brick=${r.brick} data-client=${r.c.hostname}><td class="mono">${r.brick}</td>
          <td class="mono">${r.c.hostname}</td><td>${r.c.process_name}</td><td>${bytes(r.c.bytes_read)}</td><td>${bytes(r.c.bytes_written)}</td><td>${r.c.op_version ?? ''}</td></tr>`
        : html`<tr data-brick=${r.brick}><td class="mono">${r.brick}</td><td colspan="5" class="muted">${r.note}</td></tr>`)}</tbody></table></div>`
      : !error && html`<p class="muted">Asking the bricks\u2026</p>`}`;
}

function Bricks({ vol, refresh }) {
  const n = q(vol.name);
  const [add, setAdd] = useState('');
  const [replica, setReplica] = useState('');
  const [force, setForce] = useState(false);
  const [picked, setPicked] = useState([]);
  const [error, setError] = useState('');
  const addBricks = async ev => {
    ev.preventDefault();
    const body = { bricks: add.split('\n').map(x => x.trim()).filter(Boolean), force };
    if (replica) body.replica = Number(replica);
    try { await api('POST', `/api/v1/volumes/${n}/bricks`, body); setAdd(''); setError(''); notify(`add-brick on ${vol.name}: done`); refresh(); }
    catch (e) { setError(e.message); }
  };
  const remove = async action => {
    try {
      await api('POST', `/api/v1/volumes/${n}/remove-brick`, { bricks: picked, action });
      setError(''); notify(`remove-brick ${action}: done`);
      if (action === 'start') location.hash = '#/tasks'; else { setPicked([]); refresh(); }
    } catch (e) { setError(e.message); }
  };
  const toggle = name => setPicked(p => p.includes(name) ? p.filter(x => x !== name) : [...p, name]);
  return html`<details class="card" style="margin-top:.75rem"><summary>Add or remove bricks</summary>
    <form class="stack" onSubmit=${addBricks} style="margin-top:.5rem">
      <div><label for="ab-bricks">Bricks to add (HOST:/PATH, one a line; a whole replica set)</label>
        <textarea id="ab-bricks" rows="3" required value=${add} onInput=${e => setAdd(e.target.value)}></textarea></div>
      <div class="row"><div><label for="ab-replica">New replica count (optional)</label><input id="ab-replica" type="number" min="1" value=${replica} onInput=${e => setReplica(e.target.value)} /></div>
        <div><label class="inline"><input type="checkbox" checked=${force} onChange=${e => setForce(e.target.checked)} /> force</label></div>
        <div style="flex:0 0 auto"><button type="submit">Add bricks</button></div></div>
    </form>
    <fieldset class="stack" style="margin-top:.75rem"><legend>Remove bricks (migrates their data first)</legend>
      ${vol.bricks.map(b => html`<label class="inline mono"><input type="checkbox" checked=${picked.includes(b.name)} onChange=${() => toggle(b.name)} /> ${b.name}</label>`)}
      <div class="actions"><button type="button" disabled=${!picked.length} onClick=${() => remove('start')}>Start removing</button>
        <button type="button" disabled=${!picked.length} onClick=${() => remove('commit')}>Commit removal</button>
        <button type="button" disabled=${!picked.length} onClick=${() => remove('stop')}>Stop removing</button></div>
    </fieldset>
    <${ErrorBox} error=${error} />
  </details>`;
}

function HealInfo({ vol, admin }) {
  const n = q(vol.name);
  const [info, error, reload] = usePoll(() => api('GET', `/api/v1/volumes/${n}/heal/info`), 10000, [vol.name]);
  const [policy, setPolicy] = useState('latest-mtime');
  const [file, setFile] = useState('');
  const [brick, setBrick] = useState('');
  const [sbError, setSbError] = useState('');
  const resolve = async ev => {
    ev.preventDefault();
    const body = { policy };
    if (file) body.file = file;
    if (policy === 'source-brick') body.brick = brick;
    try { const r = await api('POST', `/api/v1/volumes/${n}/heal/split-brain`, body); setSbError(''); notify(`split-brain: ${r.healed} healed`); reload(); }
    catch (e) { setSbError(e.message); }
  };
  return html`<h2>Self-heal</h2>
    <${ErrorBox} error=${error} />
    ${info && html`<div class="table-wrap"><table id="heal-table"><thead><tr><th scope="col">Brick</th><th scope="col">Status</th><th scope="col">Entries needing heal</th></tr></thead>
      <tbody>${info.bricks.map(b => html`<tr><td class="mono">${b.brick}</td><td>${b.status}</td>
        <td>${b.count == null ? '' : b.count}${(b.entries || []).slice(0, 20).map(e => html`<div class="mono">${e.path || e.gfid} ${e.status ? `(${e.status})` : ''}</div>`)}</td></tr>`)}</tbody></table></div>`}
    ${admin && html`<div class="actions" style="margin:.5rem 0"><${Act} label="Heal now" call=${() => api('POST', `/api/v1/volumes/${n}/heal`, { op: 'index' })} done=${reload} />
      <${Act} label="Full heal" call=${() => api('POST', `/api/v1/volumes/${n}/heal`, { op: 'full' })} done=${reload} /></div>
      <form class="stack" onSubmit=${resolve}><fieldset class="stack"><legend>Resolve a split-brain</legend>
        <div class="row"><div><label for="sb-policy">Policy</label><select id="sb-policy" value=${policy} onChange=${e => setPolicy(e.target.value)}>
          <option value="latest-mtime">latest-mtime</option><option value="bigger-file">bigger-file</option><option value="source-brick">source-brick</option></select></div>
          <div><label for="sb-file">File (path from the volume's root, or gfid:UUID)</label><input id="sb-file" value=${file} onInput=${e => setFile(e.target.value)} required=${policy !== 'source-brick'} /></div>
          ${policy === 'source-brick' && html`<div><label for="sb-brick">Source brick</label><select id="sb-brick" value=${brick} onChange=${e => setBrick(e.target.value)} required>
            <option value="">choose</option>${vol.bricks.map(b => html`<option value=${b.name}>${b.name}</option>`)}</select></div>`}</div>
        <${ErrorBox} error=${sbError} />
        <div><button type="submit">Resolve</button></div></fieldset></form>`}`;
}

let helpCache = null;
function Options({ name, admin, vol, refresh }) {
  const n = q(name);
  const [help, setHelp] = useState(helpCache);
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const [error, setError] = useState('');
  const [showAll, setShowAll] = useState(false);
  const [opts, , reload] = usePoll(() => api('GET', `/api/v1/volumes/${n}/options`), 0, [name, vol.version]);
  useEffect(() => {
    if (!helpCache) api('GET', '/api/v1/options').then(d => { helpCache = Object.fromEntries(d.options.map(o => [o.key, o])); setHelp(helpCache); }).catch(() => {});
  }, []);
  const submit = async ev => {
    ev.preventDefault();
    try {
      await api('POST', `/api/v1/volumes/${n}/options`, { options: { [key.trim()]: value } });
      notify(`${key} = ${value} set on ${name}`);
      setError(''); setKey(''); setValue('');
      refresh(); reload();
    } catch (e) { setError(e.message); }
  };
  const shown = opts ? opts.options.filter(o => showAll || o.set) : [];
  const chosen = help && help[key.trim()];
  return html`<h2>Options</h2>
    ${admin && html`<form class="stack" id="option-form" onSubmit=${submit}><fieldset class="stack"><legend>Set an option</legend>
      <div class="row">
        <div><label for="o-key">Key</label><input id="o-key" list="o-keys" required value=${key} onInput=${e => setKey(e.target.value)}
          aria-describedby="o-help" aria-invalid=${error ? 'true' : 'false'} />
          <datalist id="o-keys">${help && Object.keys(help).map(k => html`<option value=${k} />`)}</datalist></div>
        <div><label for="o-value">Value</label><input id="o-value" required value=${value} onInput=${e => setValue(e.target.value)}
          aria-describedby="o-help o-error" aria-invalid=${error ? 'true' : 'false'} /></div>
        <div style="flex: 0 0 auto"><button type="submit" class="primary" id="o-submit">Set</button></div>
      </div>
      <p id="o-help" class="muted">${chosen ? `${chosen.description || ''} (default ${chosen.default ?? 'none'}${chosen.choices && chosen.choices.length ? `; one of ${chosen.choices.join(', ')}` : ''})` : 'GlusterFS\u2019s keys, as in volume set; the list completes them.'}</p>
      <div id="o-error">${error && html`<p class="error" role="alert">${error}</p>`}</div>
    </fieldset></form>`}
    <p><label class="inline"><input type="checkbox" checked=${showAll} onChange=${e => setShowAll(e.target.checked)} /> show every option, not only those set</label></p>
    <div class="table-wrap"><table id="option-table"><thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col">Help</th>${admin && html`<th scope="col"><span class="skip-label">Reset</span></th>`}</tr></thead>
      <tbody>${shown.length === 0 ? html`<tr><td colspan="4" class="muted">No option set on this volume.</td></tr>` : shown.map(o => html`<tr data-key=${o.key}>
        <td class="mono">${o.key}</td><td class="mono">${String(o.value ?? '')}</td>
        <td class="muted">${help && help[o.key] ? help[o.key].description : ''}</td>
        ${admin && html`<td>${o.set && html`<${Act} label=${`Reset ${o.key}`} call=${() => api('DELETE', `/api/v1/volumes/${n}/options/${q(o.key)}`)} done=${() => { refresh(); reload(); }} />`}</td>`}</tr>`)}</tbody></table></div>`;
}

// -- tasks --------------------------------------------------------------------

function Tasks({ who }) {
  const admin = who.role === 'admin';
  const [data, error] = usePoll(async () => {
    const all = (await api('GET', '/api/v1/volumes')).volumes;
    const vols = all.filter(v => Object.keys(v.tasks || {}).length);
    const out = [];
    for (const v of vols) {
      for (const kind of Object.keys(v.tasks)) {
        if (kind !== 'rebalance' && kind !== 'remove-brick') continue;
        try { out.push(await api('GET', `/api/v1/volumes/${q(v.name)}/${kind}`)); } catch (e) { out.push({ volume: v.name, kind, error: e.message, nodes: [] }); }
      }
    }
    // heals: every started replicated volume's, listed while entries are
    // pending or a heal ended lately (the daemon keeps the task: heal_task.py)
    for (const v of all.filter(v => v.status === 'Started' && v.replica > 1)) {
      try {
        const h = await api('GET', `/api/v1/volumes/${q(v.name)}/heal/task`);
        if (h.task) out.push(h);
      } catch (e) { out.push({ volume: v.name, kind: 'heal', error: e.message, nodes: [] }); }
    }
    return out;
  }, 2000);
  return html`<${Heading}>Tasks<//>
    <${ErrorBox} error=${error} />
    ${data && data.length === 0 && html`<p>No rebalance, remove-brick or heal task on any volume.</p>`}
    ${data && data.map(t => t.kind === 'heal' ? html`<${HealTask} t=${t} />` : html`<section class="card task" data-volume=${t.volume} data-kind=${t.kind} aria-labelledby=${`t-${t.volume}-${t.kind}`}>
      <h2 id=${`t-${t.volume}-${t.kind}`}>${t.kind} on <a href=${`#/volumes/${q(t.volume)}`}>${t.volume}</a>${': '}<span class="task-status">${t.aggregate ? t.aggregate.status : 'unknown'}</span></h2>
      <${ErrorBox} error=${t.error} />
      ${t.aggregate && html`<${Progress} value=${t.aggregate.progress} label=${`${t.kind} of ${t.volume}`} />
        <p>${t.aggregate.files} files, ${bytes(t.aggregate.size)} moved; ${t.aggregate.failures} failures, ${t.aggregate.skipped} skipped;
          run time ${secs(t.aggregate['run-time'])}${t.aggregate['time-left'] ? `, about ${secs(t.aggregate['time-left'])} left` : ''}</p>`}
      <div class="table-wrap"><table><thead><tr><th scope="col">Node</th><th scope="col">Status</th><th scope="col">Progress</th><th scope="col">Files</th><th scope="col">Size</th><th scope="col">Failures</th><th scope="col">Time left</th></tr></thead>
        <tbody>${t.nodes.map(r => html`<tr><td>${r.host}</td><td>${r.status}${r.error ? ` (${r.error})` : ''}</td>
          <td><${Progress} value=${r.progress} label=${`${r.host}`} /></td><td>${r.files}</td><td>${bytes(r.size)}</td><td>${r.failures}</td><td>${secs(r['time-left'])}</td></tr>`)}</tbody></table></div>
      ${admin && t.kind === 'rebalance' && t.aggregate && /progress/.test(t.aggregate.status) && html`<p><${Act} label="Stop the rebalance"
        call=${() => api('POST', `/api/v1/volumes/${q(t.volume)}/rebalance`, { action: 'stop' })} /></p>`}
      ${admin && t.kind === 'remove-brick' && t.task && t.aggregate && html`<p class="actions">
        ${t.aggregate.status === 'completed' && html`<${Act} label="Commit the removal" call=${() => api('POST', `/api/v1/volumes/${q(t.volume)}/remove-brick`, { bricks: t.task.bricks, action: 'commit' })} />`}
        ${/progress/.test(t.aggregate.status) && html`<${Act} label="Stop removing" call=${() => api('POST', `/api/v1/volumes/${q(t.volume)}/remove-brick`, { bricks: t.task.bricks, action: 'stop' })} />`}</p>`}
    </section>`)}`;
}

// A heal: entries pending per brick, healed since it began, and a time left
// from the rate the daemon measured over its last samples - or, plainly, that
// no rate is known yet.
function HealTask({ t }) {
  const a = t.aggregate;
  const id = `t-${t.volume}-heal`;
  const left = (pending, rate, timeLeft) => pending === 0 ? 'done' : timeLeft != null ? `about ${secs(timeLeft)}` : pending == null ? '' : 'not known yet';
  return html`<section class="card task" data-volume=${t.volume} data-kind="heal" aria-labelledby=${id}>
    <h2 id=${id}>heal on <a href=${`#/volumes/${q(t.volume)}`}>${t.volume}</a>${': '}<span class="task-status">${a ? a.status : 'unknown'}</span></h2>
    <${ErrorBox} error=${t.error} />
    ${a && html`<${Progress} value=${a.progress} label=${`heal of ${t.volume}`} />
      <p class="heal-summary">${a.pending} entr${a.pending === 1 ? 'y' : 'ies'} pending, ${a.healed} healed since ${t.task['started-by'] === 'self-heal daemon' ? 'first seen pending' : `${t.task['started-by']} was asked`};
        run time ${secs(a['run-time'])}; ${a.status === 'completed' ? 'nothing left to heal.'
          : a.rate ? `healing ${a.rate.toFixed(a.rate < 10 ? 1 : 0)} entries/s, about ${secs(a['time-left'])} left.`
          : html`<span class="heal-eta">time left not known yet: no entry was healed between the last polls, so there is no heal rate to go by.</span>`}</p>
      ${t.note && html`<p class="warn">${t.note}</p>`}`}
    <div class="table-wrap"><table><thead><tr><th scope="col">Brick</th><th scope="col">Status</th><th scope="col">Pending</th><th scope="col">Healed</th><th scope="col">Progress</th><th scope="col">Time left</th></tr></thead>
      <tbody>${t.nodes.map(r => html`<tr data-brick=${r.brick}><td class="mono">${r.brick}</td><td>${r.status}</td><td class="pending">${r.pending ?? ''}</td><td>${r.healed}</td>
        <td><${Progress} value=${r.progress} label=${r.brick} /></td><td>${left(r.pending, r.rate, r['time-left'])}</td></tr>`)}</tbody></table></div>
  </section>`;
}

// -- audit log ----------------------------------------------------------------

function describeWho(w) {
  if (!w) return '';
  const name = w.token ? `token ${w.token}` : w.kind === 'local' ? `root (uid ${w.uid})` : w.peer ? `peer ${w.peer.slice(0, 8)}` : w.kind || '?';
  return `${name}${w.address ? ` from ${w.address}` : ''}`;
}

function AuditTable({ entries }) {
  return html`<div class="table-wrap"><table class="audit-table"><thead><tr><th scope="col">Time (UTC)</th><th scope="col">Who</th>
    <th scope="col">Operation</th><th scope="col">Volume</th><th scope="col">Result</th></tr></thead>
    <tbody>${entries.length === 0 ? html`<tr><td colspan="5" class="muted">Nothing matches.</td></tr>` : entries.map(e => html`<tr>
      <td class="mono">${(e.time || '').slice(0, 19)}</td><td>${describeWho(e.who)}</td><td>${e.op}${e.args && e.args.options ? ` ${Object.entries(e.args.options).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}</td>
      <td>${(/^(token|peer|tls)/.test(e.op) ? '' : e.args && e.args.name) || ''}</td><td class=${/^success/.test(e.result) ? 'ok' : 'bad'}>${e.result}</td></tr>`)}</tbody></table></div>`;
}

function Audit({ params }) {
  const [f, setF] = useState({ who: '', op: '', volume: params.get('volume') || '', result: '', since: '', until: '' });
  const [data, error] = usePoll(() => api('GET', '/api/v1/log?limit=2000'), 5000);
  const set = k => e => setF({ ...f, [k]: e.target.value });
  const has = (text, part) => !part || String(text || '').toLowerCase().includes(part.toLowerCase());
  const entries = data ? data.entries.filter(e => has(describeWho(e.who) + ' ' + ((e.who && e.who.user) || ''), f.who) && has(e.op, f.op) &&
    (!f.volume || (e.args && e.args.name) === f.volume) &&
    (!f.result || (e.result || '').startsWith(f.result)) &&
    (!f.since || (e.time || '') >= f.since.replace('T', ' ')) && (!f.until || (e.time || '') <= f.until.replace('T', ' ') + '~')).reverse() : [];
  return html`<${Heading}>Audit log<//>
    <form class="row" role="search" aria-label="Filter the audit log" onSubmit=${e => e.preventDefault()}>
      <div><label for="a-who">Who</label><input id="a-who" value=${f.who} onInput=${set('who')} placeholder="token name, address" /></div>
      <div><label for="a-op">Operation</label><input id="a-op" value=${f.op} onInput=${set('op')} placeholder="set, create, ..." /></div>
      <div><label for="a-volume">Volume</label><input id="a-volume" value=${f.volume} onInput=${set('volume')} /></div>
      <div><label for="a-result">Result</label><select id="a-result" value=${f.result} onChange=${set('result')}>
        <option value="">any</option><option value="success">success</option><option value="failed">failed</option><option value="refused">refused</option></select></div>
      <div><label for="a-since">From (UTC)</label><input id="a-since" type="datetime-local" value=${f.since} onInput=${set('since')} /></div>
      <div><label for="a-until">Until (UTC)</label><input id="a-until" type="datetime-local" value=${f.until} onInput=${set('until')} /></div>
    </form>
    <${ErrorBox} error=${error} />
    <p class="muted" aria-live="polite">${data ? `${entries.length} of ${data.entries.length} entries` : 'Loading\u2026'}</p>
    <${AuditTable} entries=${entries} />`;
}

// -- profile ------------------------------------------------------------------

function Profile({ name, who }) {
  const admin = who.role === 'admin';
  const [vols, , reloadVols] = usePoll(() => api('GET', '/api/v1/volumes'), 0);
  const [period, setPeriod] = useState('cumulative');
  const [history, setHistory] = useState([]);
  const n = name && q(name);
  const [data, error, refresh] = usePoll(async () => {
    if (!name) return null;
    const d = await api('GET', `/api/v1/volumes/${n}/profile`);
    // each read starts a new interval: its bytes over its duration is the rate
    let read = 0, written = 0, dur = 0;
    for (const b of d.bricks) if (b.report) { read += b.report.interval.data_read; written += b.report.interval.data_written; dur = Math.max(dur, b.report.interval.duration); }
    if (dur > 0) setHistory(h => [...h.slice(-29), { read: read / dur, written: written / dur }]);
    return d;
  }, 5000, [name]);
  const vol = vols && name && vols.volumes.find(v => v.name === name);
  // one root: a fragment whose children come and go was put back out of order
  return html`<div><${Heading}>Profile${name ? ` of ${name}` : ''}<//>
    <div class="row"><div><label for="p-vol">Volume</label><select id="p-vol" value=${name || ''} onChange=${e => { location.hash = `#/profile/${q(e.target.value)}`; }}>
      <option value="">choose a volume</option>${vols && vols.volumes.map(v => html`<option value=${v.name}>${v.name}</option>`)}</select></div>
      <div><label for="p-period">Counters</label><select id="p-period" value=${period} onChange=${e => setPeriod(e.target.value)}>
        <option value="cumulative">cumulative</option><option value="interval">this interval</option></select></div></div>
    ${admin && vol && html`<p class="actions">${vol.profile ? html`<${Act} label="Stop profiling" call=${() => api('POST', `/api/v1/volumes/${n}/profile`, { action: 'stop' })} done=${() => { reloadVols(); refresh(); }} />`
      : html`<${Act} label="Start profiling" call=${() => api('POST', `/api/v1/volumes/${n}/profile`, { action: 'start' })} done=${() => { reloadVols(); refresh(); }} />`}</p>`}
    <${ErrorBox} error=${name && error} />
    ${history.length > 1 && html`<h2>Throughput</h2><${Chart} points=${history} />`}
    ${data && data.bricks.map(b => html`<section aria-label=${`brick ${b.brick}`}><h2 class="mono">${b.brick}</h2>
      ${b.error ? html`<p class="error">${b.error}</p>` : html`<${BrickProfile} p=${b.report[period]} />`}</section>`)}</div>`;
}

function BrickProfile({ p }) {
  const fops = Object.entries(p.fops || {}).sort((a, b) => b[1].hits - a[1].hits);
  const blocks = [...Object.entries(p.block_read || {}).map(([k, v]) => ['read', k, v]), ...Object.entries(p.block_write || {}).map(([k, v]) => ['write', k, v])];
  const most = Math.max(1, ...blocks.map(b => b[2]));
  const us = ns => ns == null ? '' : (ns / 1000).toFixed(1);
  return html`<p>${bytes(p.data_read)} read, ${bytes(p.data_written)} written in ${secs(p.duration)}</p>
    <div class="table-wrap"><table><thead><tr><th scope="col">Fop</th><th scope="col">Calls</th><th scope="col">Avg \u00b5s</th><th scope="col">Min \u00b5s</th><th scope="col">Max \u00b5s</th></tr></thead>
      <tbody>${fops.map(([k, f]) => html`<tr><td>${k}</td><td>${f.hits}</td><td>${us(f.avg_ns)}</td><td>${us(f.min_ns)}</td><td>${us(f.max_ns)}</td></tr>`)}</tbody></table></div>
    ${blocks.length > 0 && html`<h3>Block sizes</h3><div class="table-wrap"><table><thead><tr><th scope="col">Op</th><th scope="col">Size \u2265</th><th scope="col">Count</th><th scope="col"><span class="muted">share</span></th></tr></thead>
      <tbody>${blocks.map(([op, k, v]) => html`<tr><td>${op}</td><td>${bytes(Number(k))}</td><td>${v}</td><td><span class="bar" style=${`width:${Math.round(v / most * 10)}rem`}></span></td></tr>`)}</tbody></table></div>`}`;
}

function Chart({ points }) {
  const w = 400, h = 120, max = Math.max(1, ...points.flatMap(p => [p.read, p.written]));
  const line = k => points.map((p, i) => `${(i / Math.max(1, points.length - 1) * w).toFixed(1)},${(h - p[k] / max * (h - 10)).toFixed(1)}`).join(' ');
  const last = points[points.length - 1];
  return html`<svg class="chart" viewBox=${`0 0 ${w} ${h}`} role="img" aria-label=${`read ${bytes(last.read)}/s, written ${bytes(last.written)}/s; peak ${bytes(max)}/s`}>
    <polyline fill="none" stroke="#0a5bc4" stroke-width="2" points=${line('read')} />
    <polyline fill="none" stroke="#c4001a" stroke-width="2" stroke-dasharray="4 3" points=${line('written')} /></svg>
    <p class="muted">solid: read, dashed: written; now ${bytes(last.read)}/s read, ${bytes(last.written)}/s written</p>`;
}

// -- the frame ----------------------------------------------------------------

const PAGES = [['dashboard', 'Dashboard'], ['volumes', 'Volumes'], ['tasks', 'Tasks'], ['audit', 'Audit log'], ['profile', 'Profile']];

function parseHash() {
  const [path, query] = (location.hash.replace(/^#\/?/, '') || 'dashboard').split('?');
  const parts = path.split('/').map(decodeURIComponent);
  return { page: parts[0], arg: parts[1], params: new URLSearchParams(query || '') };
}

function App() {
  const [who, setWho] = useState(null);
  const [checked, setChecked] = useState(!token);
  const [message, setMessage] = useState('');
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    onSignedOut = msg => { token = ''; sessionStorage.removeItem(TOKEN_KEY); setWho(null); setMessage(msg); };
    if (token) api('GET', '/api/v1/whoami').then(setWho).catch(() => {}).finally(() => setChecked(true));
    return () => removeEventListener('hashchange', on);
  }, []);
  if (!checked) return html`<p class="loading">Signing in\u2026</p>`;
  if (!who) return html`<${SignIn} message=${message} onIn=${w => { setMessage(''); setWho(w); }} />`;
  const signOut = () => { token = ''; sessionStorage.removeItem(TOKEN_KEY); setWho(null); };
  const { page, arg, params } = route;
  let body;
  if (page === 'volumes' && arg) body = html`<${VolumePage} key=${arg} name=${arg} who=${who} />`;
  else if (page === 'volumes') body = html`<${Volumes} who=${who} />`;
  else if (page === 'tasks') body = html`<${Tasks} who=${who} />`;
  else if (page === 'audit') body = html`<${Audit} key=${params.toString()} params=${params} />`;
  else if (page === 'profile') body = html`<${Profile} key=${arg || ''} name=${arg} who=${who} />`;
  else body = html`<${Dashboard} />`;
  return html`<a class="skip" href="#content" onClick=${e => { e.preventDefault(); document.getElementById('content').focus(); }}>Skip to the content</a>
    <header class="top"><span class="brand">glusterpy \u00b7 ${who.node && who.node.hostnames ? who.node.hostnames[0] : ''}</span>
      <nav class="main" aria-label="Sections"><ul>${PAGES.map(([p, label]) => html`<li><a href=${`#/${p}`} aria-current=${page === p ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>
      <span class="role" id="role">${who.name || ''}: ${who.role}</span>
      <button type="button" id="sign-out" onClick=${signOut}>Sign out</button></header>
    <main id="content" tabindex="-1">${body}</main><${Notice} />`;
}

const root = document.getElementById('app');
root.textContent = '';  // the no-script notice: Preact adds to what is there
render(html`<${App} />`, root);
