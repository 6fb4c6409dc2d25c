// vkv's key browser: plain DOM code, no framework, no build step.
//
// Safety rule: data from the server (keys, values, error details) reaches
// the document only through textContent, attribute values and form values,
// never as HTML. The page's Content-Security-Policy forbids inline script,
// so even markup that slipped in could not run; this keeps it from being
// markup at all.
'use strict';
(() => {
  const PAGE = 100; // keys and folders per page of the listing
  const HISTORY_PAGE = 50;
  const DELIM = '/';
  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem('vkv-token') || '',
    scope: null, // 'read' | 'write' | 'admin' once known
    prefix: null, // the folder listed
    after: null, // the listing's next page cursor
    listGen: 0,
    keyGen: 0,
    key: null, // the key open, or null
    latest: null, // {version, deleted, raw, timestamp} of the open key (version 0: none)
    history: [], // its versions, newest first
    nextBefore: null,
    shown: null, // the version shown (a number), or null for the latest
    editBase: null, // the version the editor's text was based on
    feed: null, // {prefix, after, ctrl, created} of the change feed followed
    paused: false, // following paused by the user
    versions: new Map(), // "version" -> {ok, raw, note} of the open key
    rendered: false,
  };

  // ---- small helpers ----------------------------------------------------

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  const enc = encodeURIComponent;

  // A link to this page with these parameters; '/' kept readable.
  function pageUrl(params) {
    const q = Object.entries(params)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => k + '=' + enc(String(v)).replace(/%2F/g, '/'))
      .join('&');
    return '/ui' + (q ? '?' + q : '');
  }

  function parentOf(key) {
    const i = key.lastIndexOf(DELIM);
    return i < 0 ? '' : key.slice(0, i + DELIM.length);
  }

  function when(ts) {
    const d = new Date(ts);
    if (isNaN(d)) return ts;
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
      `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }

  function banner(text, isError) {
    const b = $('banner');
    b.textContent = text;
    b.className = isError ? 'error' : '';
    b.hidden = !text;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---- JSON text, kept as sent -------------------------------------------
  // Values are re-indented token by token, never parsed into numbers, so a
  // number beyond a double's precision shows (and is saved back) as stored.

  const WS = ' \t\n\r';

  // The end of the string token starting at raw[i] (a '"').
  function stringEnd(raw, i) {
    let j = i + 1;
    while (j < raw.length && raw[j] !== '"') j += raw[j] === '\\' ? 2 : 1;
    return j + 1;
  }

  // The end of the JSON value starting at raw[i].
  function valueEnd(raw, i) {
    let depth = 0;
    let j = i;
    do {
      const c = raw[j];
      if (c === '"') { j = stringEnd(raw, j); continue; }
      if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') depth--;
      else if (depth === 0 && !WS.includes(c)) {
        while (j < raw.length && !(WS + ',:]}').includes(raw[j])) j++;
        return j;
      }
      j++;
    } while (depth > 0 && j < raw.length);
    return j;
  }

  // The raw text of member `name` of the JSON object `raw`, or null.
  function member(raw, name) {
    let i = raw.indexOf('{') + 1;
    while (i > 0 && i < raw.length) {
      while (WS.includes(raw[i]) || raw[i] === ',') i++;
      if (raw[i] !== '"') return null;
      const keyEnd = stringEnd(raw, i);
      const key = JSON.parse(raw.slice(i, keyEnd));
      i = raw.indexOf(':', keyEnd) + 1;
      while (WS.includes(raw[i])) i++;
      const end = valueEnd(raw, i);
      if (key === name) return raw.slice(i, end);
      i = end;
    }
    return null;
  }

  function pretty(raw) {
    let out = '';
    let depth = 0;
    const nl = () => '\n' + '  '.repeat(depth);
    for (let i = 0; i < raw.length;) {
      const c = raw[i];
      if (c === '"') {
        const j = stringEnd(raw, i);
        out += raw.slice(i, j);
        i = j;
      } else if (WS.includes(c)) {
        i++;
      } else if (c === '{' || c === '[') {
        let j = i + 1;
        while (WS.includes(raw[j]) && j < raw.length) j++;
        if (raw[j] === (c === '{' ? '}' : ']')) {
          out += c + raw[j];
          i = j + 1;
        } else {
          depth++;
          out += c + nl();
          i++;
        }
      } else if (c === '}' || c === ']') {
        depth--;
        out += nl() + c;
        i++;
      } else if (c === ',') {
        out += ',' + nl();
        i++;
      } else if (c === ':') {
        out += ': ';
        i++;
      } else {
        let j = i;
        while (j < raw.length && !(WS + ',:]}').includes(raw[j])) j++;
        out += raw.slice(i, j);
        i = j;
      }
    }
    return out;
  }

  // ---- line diff ---------------------------------------------------------

  // [op, line] with op ' ', '-' or '+': a longest common subsequence of the
  // lines between the common head and tail (a plain replacement when that
  // middle is too large to compare line by line).
  function diffLines(a, b) {
    let head = 0;
    while (head < a.length && head < b.length && a[head] === b[head]) head++;
    let ea = a.length;
    let eb = b.length;
    while (ea > head && eb > head && a[ea - 1] === b[eb - 1]) { ea--; eb--; }
    const out = a.slice(0, head).map((l) => [' ', l]);
    const A = a.slice(head, ea);
    const B = b.slice(head, eb);
    const n = A.length;
    const m = B.length;
    if (n * m > 4e6) {
      A.forEach((l) => out.push(['-', l]));
      B.forEach((l) => out.push(['+', l]));
    } else {
      const w = m + 1;
      const lcs = new Uint32Array((n + 1) * w);
      for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
          lcs[i * w + j] = A[i] === B[j] ? lcs[(i + 1) * w + j + 1] + 1
            : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
        }
      }
      let i = 0;
      let j = 0;
      while (i < n && j < m) {
        if (A[i] === B[j]) { out.push([' ', A[i]]); i++; j++; }
        else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) out.push(['-', A[i++]]);
        else out.push(['+', B[j++]]);
      }
      while (i < n) out.push(['-', A[i++]]);
      while (j < m) out.push(['+', B[j++]]);
    }
    for (let i = ea; i < a.length; i++) out.push([' ', a[i]]);
    return out;
  }

  // Renders a diff into `pre`, unchanged runs longer than 7 lines folded.
  function showDiff(pre, before, after) {
    const rows = diffLines(before.split('\n'), after.split('\n'));
    const lines = [];
    const changed = rows.map((r) => r[0] !== ' ');
    const near = (i) => changed.slice(Math.max(0, i - 3), i + 4).some(Boolean);
    let skipped = 0;
    rows.forEach(([op, line], i) => {
      if (op === ' ' && !near(i) && rows.length > 7) { skipped++; return; }
      if (skipped) { lines.push(el('span', { class: 'gap', text: `  … ${skipped} unchanged` })); skipped = 0; }
      const cls = op === '+' ? 'add' : op === '-' ? 'del' : '';
      lines.push(el('span', { class: cls, text: op + ' ' + line }));
    });
    if (skipped) lines.push(el('span', { class: 'gap', text: `  … ${skipped} unchanged` }));
    if (!changed.some(Boolean)) lines.unshift(el('span', { class: 'gap', text: '(no difference)' }));
    pre.replaceChildren(...lines);
    pre.hidden = false;
  }

  // ---- the API -----------------------------------------------------------

  async function api(method, path, opts = {}) {
    const headers = Object.assign({}, opts.headers);
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: opts.body, signal: opts.signal, cache: 'no-store' });
    const text = await r.text();
    const answer = {
      status: r.status,
      ok: r.ok,
      text,
      headers: r.headers,
      json() { try { return JSON.parse(text); } catch (_) { return {}; } },
      detail() { return this.json().detail || `HTTP ${r.status}`; },
    };
    if (r.status === 401) askToken('The server asks for a token: ' + answer.detail());
    return answer;
  }

  // ---- sign-in and scope -------------------------------------------------

  function applyScope(who) {
    state.scope = who.scope;
    const readOnly = who.scope === 'read';
    // Hidden, not just disabled: a read-only token sees no write action
    // (the page starts read-only, so none shows before the scope is known).
    document.body.classList.toggle('read-only', readOnly);
    $('new-key').hidden = readOnly;
    $('sign-out').hidden = !who.auth;
    $('who').textContent = who.auth ? `token: ${who.scope}` : '';
  }

  async function whoami() {
    const r = await api('GET', '/auth/whoami');
    if (r.ok) applyScope(r.json());
    return r.ok;
  }

  function askToken(message) {
    const d = $('token-dialog');
    $('token-error').textContent = state.token ? message : '';
    if (!d.open) {
      d.showModal();
      $('token-input').focus();
    }
  }

  async function signIn(e) {
    e.preventDefault();
    state.token = $('token-input').value.trim();
    const r = await api('GET', '/auth/whoami');
    if (!r.ok) {
      $('token-error').textContent = r.status === 401 ? 'This token is not accepted.' : r.detail();
      return;
    }
    sessionStorage.setItem('vkv-token', state.token);
    $('token-input').value = '';
    $('token-dialog').close();
    applyScope(r.json());
    state.prefix = null; // list again, now with the token
    render();
  }

  function signOut() {
    sessionStorage.removeItem('vkv-token');
    state.token = '';
    location.reload();
  }

  // ---- confirmation ------------------------------------------------------

  function confirmAction(title, text, ok) {
    const d = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = ok;
    d.showModal();
    $('confirm-cancel').focus();
    return new Promise((resolve) => {
      const done = (yes) => {
        $('confirm-form').onsubmit = null;
        $('confirm-cancel').onclick = null;
        d.onclose = null;
        if (d.open) d.close();
        resolve(yes);
      };
      $('confirm-form').onsubmit = (e) => { e.preventDefault(); done(true); };
      $('confirm-cancel').onclick = () => done(false);
      d.onclose = () => done(false);
    });
  }

  // ---- navigation --------------------------------------------------------

  function go(url) {
    history.pushState(null, '', url);
    render();
  }

  // Links inside the page navigate without reloading it (a click with a
  // modifier key still opens a new tab).
  function onLinkClick(e) {
    const a = e.target.closest('a[data-nav]');
    if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    banner('');
    go(a.getAttribute('href'));
  }

  function render() {
    const q = new URLSearchParams(location.search);
    const key = q.get('key');
    const version = Number(q.get('version')) || null;
    const prefix = key !== null ? parentOf(key) : (q.get('prefix') || '');
    renderCrumbs(prefix);
    if (prefix !== state.prefix) {
      state.prefix = prefix;
      $('filter').value = '';
      loadList(false);
    }
    if (key !== null) openKey(key, version);
    else closeKey();
    markCurrent();
  }

  function renderCrumbs(prefix) {
    const parts = [el('a', { href: pageUrl({}), text: '(root)', dataset: { nav: '' } })];
    let at = 0;
    while (at < prefix.length) {
      const i = prefix.indexOf(DELIM, at);
      const end = i < 0 ? prefix.length : i + DELIM.length;
      parts.push(el('span', { class: 'sep', text: '/', 'aria-hidden': 'true' }));
      parts.push(el('a', { href: pageUrl({ prefix: prefix.slice(0, end) }), text: prefix.slice(at, end - (i < 0 ? 0 : DELIM.length)), dataset: { nav: '' } }));
      at = end;
    }
    $('crumbs').replaceChildren(...parts);
    $('folder-name').textContent = prefix ? `“${prefix}”` : 'the root';
    document.title = (state.key || prefix || 'keys') + ' · vkv';
  }

  // ---- the listing -------------------------------------------------------

  async function loadList(append) {
    const gen = append ? state.listGen : ++state.listGen;
    const prefix = state.prefix + $('filter').value;
    const params = new URLSearchParams({ prefix, delimiter: DELIM, limit: PAGE });
    if (append && state.after) params.set('after', state.after);
    $('more').disabled = true;
    if (!append) {
      $('list-status').textContent = 'Loading…';
      stopFeed(); // the new listing starts its own
    }
    let r;
    try {
      r = await api('GET', '/keys?' + params);
    } catch (e) {
      if (gen === state.listGen) $('list-status').textContent = 'The server did not answer: ' + e.message;
      if (gen === state.listGen && !append) liveState('off');
      return;
    }
    if (gen !== state.listGen) return;
    $('more').disabled = false;
    if (!r.ok) {
      $('list-status').textContent = r.status === 401 ? 'Sign in to list the keys.' : r.detail();
      if (!append) { $('entries').replaceChildren(); liveState('off'); }
      $('more').hidden = true;
      return;
    }
    const page = r.json();
    const items = (page.prefixes || []).map(folderItem).concat(page.keys.map(keyItem));
    if (append) $('entries').append(...items);
    else $('entries').replaceChildren(...items);
    state.after = page.next_after;
    $('more').hidden = !page.next_after;
    listStatus();
    markCurrent();
    // List, then watch: the feed starts at the revision this listing shows,
    // so nothing written meanwhile is missed. (A later page is a newer
    // snapshot; the feed's older changes to its keys are skipped by version.)
    if (!append) startFeed(state.prefix, page.revision);
    if (!state.rendered) {
      state.rendered = true;
      // The first page is on screen at the next frame: what the browser
      // test times (from the page's request).
      requestAnimationFrame(() => performance.mark('vkv-list-rendered'));
    }
  }

  function folderItem(folder) {
    return el('li', { dataset: { folder } }, el('a', {
      class: 'folder', href: pageUrl({ prefix: folder }), text: folder.slice(state.prefix.length),
      dataset: { nav: '', folder },
    }));
  }

  // A key of the listing; `version` kept to skip changes older than it.
  function keyItem(k) {
    const name = k.key.slice(state.prefix.length);
    return el('li', { dataset: { key: k.key, version: String(k.version) } },
      el('a', { class: 'key', href: pageUrl({ key: k.key }), text: name === '' ? '(this key)' : name, dataset: { nav: '' } }),
      el('span', { class: 'meta', text: `v${k.version} · ${when(k.timestamp)}`, title: k.timestamp }));
  }

  function listStatus() {
    const shown = $('entries').children.length;
    $('list-status').textContent = shown === 0 ? 'No keys here.' :
      `${shown} ${shown === 1 ? 'entry' : 'entries'}${state.after ? ', more below' : ''}`;
  }

  function markCurrent() {
    for (const li of $('entries').children) {
      li.classList.toggle('current', li.dataset.key !== undefined && li.dataset.key === state.key);
    }
  }

  let filterTimer = 0;
  function onFilter() {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => loadList(false), 150);
  }

  // ---- a key -------------------------------------------------------------

  function closeKey() {
    state.key = null;
    state.keyGen++;
    $('key-view').hidden = true;
  }

  async function openKey(key, version) {
    const gen = ++state.keyGen;
    const same = key === state.key;
    state.key = key;
    state.shown = version;
    if (!same) {
      state.versions = new Map();
      closeEditor();
      $('diff-box').hidden = true;
      $('value').textContent = '';
    }
    $('key-view').hidden = false;
    $('key-name').textContent = key;
    document.title = key + ' · vkv';
    const path = enc(key);
    let g;
    let h;
    try {
      [g, h] = await Promise.all([
        api('GET', '/get/' + path),
        api('GET', `/history/${path}?limit=${HISTORY_PAGE}`),
      ]);
    } catch (e) {
      $('key-meta').textContent = 'The server did not answer: ' + e.message;
      return;
    }
    if (gen !== state.keyGen) return;
    if (g.status === 401 || h.status === 401) {
      $('key-meta').textContent = 'Sign in to read this key.';
      return;
    }
    const hist = h.ok ? h.json() : { versions: [], next_before: null };
    state.history = hist.versions;
    state.nextBefore = hist.next_before;
    if (g.ok) {
      const got = g.json();
      const raw = member(g.text, 'value');
      state.latest = { version: got.version, deleted: false, raw, timestamp: got.timestamp };
      state.versions.set(String(got.version), { ok: true, raw });
    } else if (state.history.length) {
      const top = state.history[0];
      state.latest = { version: top.version, deleted: top.deleted, raw: null, timestamp: top.timestamp };
    } else {
      state.latest = { version: 0, deleted: false, raw: null, timestamp: null };
    }
    if (g.status !== 200 && g.status !== 404) banner(g.detail(), true);
    renderKeyMeta();
    renderHistory(false);
    await showVersion(state.shown);
  }

  function renderKeyMeta() {
    const l = state.latest;
    let meta;
    if (l.version === 0) meta = 'No such key. Edit to create it.';
    else if (l.deleted) meta = `Deleted: version ${l.version}, ${when(l.timestamp)}. Edit to write it again.`;
    else meta = `Version ${l.version}, ${when(l.timestamp)}`;
    $('key-meta').textContent = meta;
    $('delete').disabled = l.version === 0 || l.deleted;
    $('purge').disabled = l.version === 0;
    $('edit').textContent = l.version === 0 || l.deleted ? 'Create' : 'Edit';
  }

  // Fetches version n of the open key (cached: versions never change).
  async function version(n) {
    const k = String(n);
    if (state.versions.has(k)) return state.versions.get(k);
    const r = await api('GET', `/get/${enc(state.key)}?version=${n}`);
    let v;
    if (r.ok) v = { ok: true, raw: member(r.text, 'value') };
    else if (r.status === 404) v = { ok: false, note: '(deleted)' };
    else if (r.status === 410) v = { ok: false, note: '(removed by retention)' };
    else return { ok: false, note: `(${r.detail()})` };
    state.versions.set(k, v);
    return v;
  }

  async function showVersion(n) {
    const gen = state.keyGen;
    const latest = state.latest;
    const target = n || latest.version;
    const pre = $('value');
    $('restore').hidden = true;
    if (target === 0) {
      $('value-title').textContent = 'Value';
      pre.textContent = '(no value)';
      pre.classList.add('deleted');
      return;
    }
    const v = await version(target);
    if (gen !== state.keyGen) return;
    const isLatest = target === latest.version;
    $('value-title').textContent = isLatest ? `Value (version ${target}, the latest)`
      : `Value of version ${target} (the latest is ${latest.version})`;
    pre.classList.toggle('deleted', !v.ok);
    pre.textContent = v.ok ? pretty(v.raw) : v.note;
    $('restore').hidden = isLatest || !v.ok || state.scope === 'read';
    for (const tr of $('history').tBodies[0].rows) {
      tr.classList.toggle('shown', tr.dataset.version === String(target));
    }
  }

  function renderHistory(append) {
    const body = $('history').tBodies[0];
    const rows = append ? state.history.slice(body.rows.length) : state.history;
    const make = (v, i) => {
      const n = v.version;
      const radio = (name, on) => el('input', {
        type: 'radio', name, value: String(n), checked: on,
        'aria-label': `${name === 'diff-a' ? 'Diff from' : 'Diff to'} version ${n}`,
      });
      const idx = append ? body.rows.length + i : i;
      return el('tr', { dataset: { version: String(n) } },
        el('td', {}, el('a', { href: pageUrl({ key: state.key, version: n }), text: String(n), dataset: { nav: '' } })),
        el('td', { text: when(v.timestamp), title: v.timestamp }),
        v.deleted ? el('td', { class: 'size tombstone', text: v.operation === 'expire' ? 'expired' : 'deleted' }) : el('td', { class: 'size', text: bytes(v.size_bytes) }),
        el('td', {}, radio('diff-a', idx === 1 || (state.history.length === 1 && idx === 0))),
        el('td', {}, radio('diff-b', idx === 0)));
    };
    const trs = rows.map(make);
    if (append) body.append(...trs);
    else body.replaceChildren(...trs);
    $('history-more').hidden = state.nextBefore === null || state.nextBefore === undefined;
    $('diff-button').disabled = state.history.length < 1;
  }

  async function olderVersions() {
    const key = state.key;
    const r = await api('GET', `/history/${enc(key)}?limit=${HISTORY_PAGE}&before=${state.nextBefore}`);
    if (!r.ok || key !== state.key) return;
    const page = r.json();
    state.history = state.history.concat(page.versions);
    state.nextBefore = page.next_before;
    renderHistory(true);
  }

  async function diffSelected() {
    const pick = (name) => document.querySelector(`#history input[name=${name}]:checked`);
    const a = pick('diff-a');
    const b = pick('diff-b');
    if (!a || !b) {
      banner('Pick a version in each of the columns A and B.', true);
      return;
    }
    const [va, vb] = await Promise.all([version(a.value), version(b.value)]);
    const text = (v) => (v.ok ? pretty(v.raw) : v.note);
    $('diff-title').textContent = `Diff of version ${a.value} → version ${b.value}`;
    showDiff($('diff'), text(va), text(vb));
    $('diff-box').hidden = false;
    $('diff').focus();
  }

  // ---- writes ------------------------------------------------------------

  function openEditor(text, base) {
    state.editBase = base;
    $('edit-value').value = text;
    $('edit-error').textContent = '';
    $('conflict').hidden = true;
    $('editor').hidden = false;
    $('edit-label').textContent = base === 0 ? 'Value (JSON) of the new key' :
      `Value (JSON); saved only if the key is still at version ${base}`;
    $('edit-value').focus();
  }

  function closeEditor() {
    state.editBase = null;
    $('editor').hidden = true;
    $('conflict').hidden = true;
    $('conflict-diff-view').hidden = true;
  }

  function editLatest() {
    const l = state.latest;
    openEditor(l.raw !== null && !l.deleted ? pretty(l.raw) : '', l.version);
  }

  function restoreShown() {
    const v = state.versions.get(String(state.shown));
    if (v && v.ok) openEditor(pretty(v.raw), state.latest.version);
  }

  // A put that writes only if the key is at version `base` (0: absent).
  function put(key, text, base) {
    return api('POST', '/put/' + enc(key), {
      body: '{"value":' + text + '}',
      headers: { 'If-Match': `"${base}"` },
    });
  }

  function invalidJson(text) {
    try {
      JSON.parse(text);
      return null;
    } catch (e) {
      return 'Not valid JSON: ' + e.message + '. A string needs quotes: "text".';
    }
  }

  async function save(e, base) {
    if (e) e.preventDefault();
    const text = $('edit-value').value;
    const bad = text.trim() === '' ? 'Enter a JSON value (null, a number, "a string", [...], {...}).' : invalidJson(text);
    if (bad) {
      $('edit-error').textContent = bad;
      return;
    }
    const key = state.key;
    const wasLive = state.latest.version !== 0 && !state.latest.deleted;
    $('save').disabled = true;
    let r;
    try {
      r = await put(key, text, base === undefined ? state.editBase : base);
    } finally {
      $('save').disabled = false;
    }
    if (r.status === 409) {
      const c = r.json();
      state.conflictVersion = c.current_version;
      $('conflict-text').textContent = `Conflict: “${key}” changed after you began editing: ` +
        `your edit is based on version ${state.editBase}, the server now has version ${c.current_version}. ` +
        'Your edit was not saved.';
      $('conflict').hidden = false;
      $('conflict-diff-view').hidden = true;
      $('conflict-diff').focus();
      return;
    }
    if (!r.ok) {
      $('edit-error').textContent = r.detail();
      return;
    }
    const done = r.json();
    closeEditor();
    banner(`Saved “${key}”: version ${done.version}.`);
    history.replaceState(null, '', pageUrl({ key }));
    await openKey(key, null);
    if (!wasLive) {
      loadList(false); // the key joins the listing
    } else {
      const li = [...$('entries').children].find((x) => x.dataset.key === key);
      if (li) li.replaceWith(keyItem(done));
      markCurrent();
    }
  }

  async function conflictDiff() {
    const r = await api('GET', '/get/' + enc(state.key));
    const theirs = r.ok ? pretty(member(r.text, 'value')) : '(deleted)';
    showDiff($('conflict-diff-view'), theirs, $('edit-value').value);
  }

  async function conflictOverwrite() {
    const v = state.conflictVersion;
    const ok = await confirmAction(`Save over version ${v}?`,
      `Your edit replaces “${state.key}” as it is now (version ${v}); version ${v} stays in the history.`, 'Save over it');
    if (!ok) return;
    state.editBase = v;
    await save(null, v);
  }

  async function conflictDiscard() {
    closeEditor();
    await openKey(state.key, null);
  }

  async function deleteKey() {
    const key = state.key;
    const ok = await confirmAction(`Delete “${key}”?`,
      'A deletion is a new version: the history stays, and the key can be written again.', 'Delete');
    if (!ok) return;
    const r = await api('DELETE', '/delete/' + enc(key));
    if (!r.ok) { banner(r.detail(), true); return; }
    banner(`Deleted “${key}”: version ${r.json().version}.`);
    await openKey(key, null);
    loadList(false);
  }

  async function purgeKey() {
    const key = state.key;
    const ok = await confirmAction(`Purge “${key}”?`,
      'Every version of this key is removed for good. This cannot be undone.', 'Purge');
    if (!ok) return;
    const r = await api('DELETE', `/delete/${enc(key)}?purge=true`);
    if (!r.ok) { banner(r.detail(), true); return; }
    banner(`Purged “${key}”: ${r.json().purged_versions} versions removed.`);
    state.prefix = null; // list again
    go(pageUrl({ prefix: parentOf(key) || null }));
  }

  function newKey() {
    $('create-key').value = state.prefix || '';
    $('create-value').value = '';
    $('create-error').textContent = '';
    $('create-dialog').showModal();
    $('create-key').focus();
  }

  async function createKey(e) {
    e.preventDefault();
    const key = $('create-key').value;
    const text = $('create-value').value;
    const bad = !key ? 'Enter a key.' : invalidJson(text);
    if (bad) { $('create-error').textContent = bad; return; }
    $('create-dialog').close();
    const ok = await confirmAction(`Create “${key}”?`, 'The key is written only if it has no version yet.', 'Create');
    if (!ok) { $('create-dialog').showModal(); return; }
    const r = await put(key, text, 0);
    if (r.status === 409) {
      $('create-error').textContent = `“${key}” already exists (version ${r.json().current_version}): open it to edit it.`;
      $('create-dialog').showModal();
      return;
    }
    if (!r.ok) {
      $('create-error').textContent = r.detail();
      $('create-dialog').showModal();
      return;
    }
    banner(`Created “${key}”: version ${r.json().version}.`);
    state.prefix = null; // list again, with the new key
    go(pageUrl({ key }));
  }

  // ---- following changes -------------------------------------------------
  // The open folder's changes come from GET /changes as an NDJSON stream,
  // read with fetch() (unlike EventSource, it can send the token). The
  // feed starts at the listing's revision; after a dropped connection it
  // resumes from the last revision seen, with a growing delay; a 410 (that
  // history is gone) lists the folder again and starts over. Applying a
  // change is idempotent (a change no newer than what is shown is skipped),
  // so resuming at the start of the last revision seen is safe.

  const GONE = ['delete', 'purge', 'expire'];

  function liveState(s) {
    const live = $('live');
    live.dataset.state = s;
    live.textContent = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', paused: 'Paused', off: '' }[s];
    live.hidden = s === 'off';
    $('live-toggle').hidden = s === 'off';
    $('live-toggle').textContent = state.paused ? 'Resume' : 'Pause';
  }

  function stopFeed() {
    if (state.feed) state.feed.ctrl.abort();
    state.feed = null;
  }

  function startFeed(prefix, after) {
    stopFeed();
    state.feed = { prefix, after, ctrl: new AbortController(), created: new Map() };
    runFeed();
  }

  function runFeed() {
    const f = state.feed;
    if (!f) { liveState('off'); return; }
    if (state.paused) { liveState('paused'); return; }
    f.ctrl = new AbortController();
    liveState('connecting');
    followFeed(f, f.ctrl.signal);
  }

  function togglePause() {
    state.paused = !state.paused;
    if (!state.paused) runFeed();
    else {
      if (state.feed) state.feed.ctrl.abort(); // kept, to resume from
      liveState('paused');
    }
  }

  async function followFeed(f, signal) {
    let delay = 0;
    const current = () => state.feed === f && !signal.aborted;
    while (current()) {
      let next = 'reconnect';
      try {
        const headers = { Accept: 'application/x-ndjson' };
        if (state.token) headers.Authorization = 'Bearer ' + state.token;
        const q = new URLSearchParams({ prefix: f.prefix, after: String(f.after) });
        const r = await fetch('/changes?' + q, { headers, signal, cache: 'no-store' });
        if (r.status === 410) next = 'relist';
        else if (r.status === 401) { askToken('The server asks for a token.'); return; }
        else if (r.ok) {
          liveState('live');
          next = await readFeed(f, r.body, () => { delay = 0; });
        }
      } catch (_) {
        // a dropped or refused connection: try again below
      }
      if (!current()) return;
      if (next === 'relist') {
        refresh(); // a new listing starts a new feed
        return;
      }
      liveState('reconnecting');
      if (next !== 'now') {
        delay = Math.min(delay ? delay * 2 : 500, 8000);
        await sleep(delay / 2 + Math.random() * delay / 2);
      }
    }
  }

  // Reads the stream to its end: what to do next ('reconnect', 'now',
  // 'relist'). `progressed` is called once something arrived.
  async function readFeed(f, body, progressed) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'reconnect';
      if (state.feed !== f) return 'stop';
      progressed();
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const m = JSON.parse(line);
        if (m.key !== undefined) {
          // Resume at the start of this revision: a batch is never cut.
          f.after = Math.max(f.after, m.revision - 1);
          applyChange(f, m);
        } else if (m.oldest_revision !== undefined) {
          return 'relist';
        } else if (m.detail !== undefined) {
          // Too slow (its revision is where to resume) or an error.
          if (m.revision !== undefined) f.after = Math.max(f.after, m.revision);
          return m.revision !== undefined ? 'now' : 'reconnect';
        } else {
          f.after = Math.max(f.after, m.revision); // a progress mark
        }
      }
    }
  }

  function applyChange(f, c) {
    if (c.key === state.key) keyChanged(c);
    if (!c.key.startsWith(state.prefix + $('filter').value)) return;
    const rest = c.key.slice(state.prefix.length);
    const slash = rest.indexOf(DELIM);
    if (slash >= 0) folderChanged(f, c, state.prefix + rest.slice(0, slash + DELIM.length));
    else listedKeyChanged(c);
    listStatus();
  }

  // Whether `name` sorts into the pages shown (or comes with "Load more").
  const loaded = (name) => !state.after || name <= state.after;

  function listedKeyChanged(c) {
    const entries = $('entries');
    const li = [...entries.children].find((x) => x.dataset.key === c.key);
    // A purge names the last version it removed; anything else is newer.
    const shown = li ? Number(li.dataset.version) : 0;
    if (li && (c.operation === 'purge' ? shown > c.version : shown >= c.version)) return;
    if (GONE.includes(c.operation)) {
      if (li) li.remove();
      return;
    }
    const item = keyItem(c);
    item.classList.add('changed');
    if (li) li.replaceWith(item);
    else if (loaded(c.key)) {
      const before = [...entries.children].find((x) => x.dataset.key !== undefined && x.dataset.key > c.key);
      entries.insertBefore(item, before || null);
    }
    markCurrent();
  }

  // A change in a subfolder: a new one appears; one that may have lost its
  // last key is asked for again.
  function folderChanged(f, c, folder) {
    const entries = $('entries');
    const li = [...entries.children].find((x) => x.dataset.folder === folder);
    if (!GONE.includes(c.operation)) {
      f.created.set(folder, c.revision);
      if (li || !loaded(folder)) return;
      const before = [...entries.children].find((x) => x.dataset.key !== undefined ||
        (x.dataset.folder !== undefined && x.dataset.folder > folder));
      entries.insertBefore(folderItem(folder), before || null);
    } else if (li) {
      api('GET', '/keys?' + new URLSearchParams({ prefix: folder, limit: 1 })).then((r) => {
        const page = r.ok ? r.json() : null;
        // Empty at a revision after any key created in it since: gone.
        if (page && page.keys.length === 0 && (f.created.get(folder) || 0) <= page.revision && li.isConnected) {
          li.remove();
          listStatus();
        }
      }).catch(() => {});
    }
  }

  function keyChanged(c) {
    const seen = state.latest ? state.latest.version : 0;
    if (c.operation === 'purge' ? c.version < seen : c.version <= seen) return;
    if (c.operation === 'purge') state.versions = new Map();
    if (state.editBase !== null) {
      banner(`“${c.key}” changed on the server (version ${c.version}): saving your edit will show a conflict.`, true);
      if (state.latest) state.latest.version = Math.max(state.latest.version, c.version);
    } else {
      openKey(c.key, state.shown);
    }
  }

  // ---- start -------------------------------------------------------------

  function refresh() {
    banner('');
    state.prefix = null;
    render();
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.querySelector('dialog[open]')) return;
    const t = e.target;
    const typing = t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName);
    if (e.key === 'Escape' && t.id === 'edit-value') { closeEditor(); $('edit').focus(); return; }
    if (typing) return;
    if (e.key === 'r') { e.preventDefault(); refresh(); }
    else if (e.key === '/') { e.preventDefault(); $('filter').focus(); }
  }

  function start() {
    document.addEventListener('click', onLinkClick);
    document.addEventListener('keydown', onKey);
    window.addEventListener('popstate', render);
    // A page left (maybe kept in the back-forward cache) holds no stream:
    // browsers allow only a few connections to one server. Back again,
    // it lists afresh.
    window.addEventListener('pagehide', stopFeed);
    window.addEventListener('pageshow', (e) => { if (e.persisted) refresh(); });
    $('refresh').onclick = refresh;
    $('more').onclick = () => loadList(true);
    $('filter-form').onsubmit = (e) => { e.preventDefault(); loadList(false); };
    $('filter').oninput = onFilter;
    $('edit').onclick = editLatest;
    $('restore').onclick = restoreShown;
    $('delete').onclick = deleteKey;
    $('purge').onclick = purgeKey;
    $('editor').onsubmit = (e) => save(e);
    $('edit-cancel').onclick = closeEditor;
    $('conflict-diff').onclick = conflictDiff;
    $('conflict-overwrite').onclick = conflictOverwrite;
    $('conflict-discard').onclick = conflictDiscard;
    $('history-more').onclick = olderVersions;
    $('diff-button').onclick = diffSelected;
    $('live-toggle').onclick = togglePause;
    $('new-key').onclick = newKey;
    $('create-form').onsubmit = createKey;
    $('create-cancel').onclick = () => $('create-dialog').close();
    $('token-form').onsubmit = signIn;
    $('token-dialog').oncancel = (e) => e.preventDefault();
    $('sign-out').onclick = signOut;
    // The scope and the first listing are asked for at once.
    whoami().catch((e) => banner('The server did not answer: ' + e.message, true));
    render();
  }

  start();
})();
