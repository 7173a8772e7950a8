// ai-gateway console: one page, hash routes, the admin API called with the session cookie.
// Everything shown is put in the page as text (textContent), never parsed as HTML.
'use strict';

(function () {
  let csrf = '';
  const main = document.getElementById('main');
  const SVG = 'http://www.w3.org/2000/svg';

  // ---------- DOM helpers ----------

  // el('div', {class: 'x', onclick: f}, 'text', child, ...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(e, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ---------- formatting ----------

  const nf = new Intl.NumberFormat('en-US');
  function num(v) {
    return v === undefined || v === null ? '—' : nf.format(v);
  }
  function usd(v) {
    if (v === undefined || v === null) return '—';
    const n = Number(v);
    return '$' + (n !== 0 && Math.abs(n) < 0.01 ? n.toPrecision(2) : n.toFixed(2));
  }
  function ms(v) {
    return v === undefined || v === null ? '—' : nf.format(Math.round(Number(v))) + ' ms';
  }
  function pct(v) {
    return v === undefined || v === null || !isFinite(v) ? '—' : (Number(v) * 100).toFixed(1) + ' %';
  }
  function time(unixSeconds) {
    if (!unixSeconds) return '—';
    return new Date(Number(unixSeconds) * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
  }
  function shortTime(unixSeconds, withDay) {
    const d = new Date(Number(unixSeconds) * 1000).toISOString();
    return withDay ? d.slice(5, 10) + ' ' + d.slice(11, 16) : d.slice(11, 16);
  }

  // ---------- the admin API ----------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // Calls the gateway; answers {status, data}. A 401 on the admin API means the session ended.
  async function api(method, path, body) {
    const headers = {accept: 'application/json'};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET') headers['x-csrf-token'] = csrf;
    let r;
    try {
      r = await fetch(path, {
        method,
        headers,
        credentials: 'same-origin',
        cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'the gateway cannot be reached (' + e.message + ')');
    }
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (r.status === 401 && path.startsWith('/admin/')) {
      showSignIn('Your session has ended; sign in again.');
      throw new ApiError(401, 'not signed in');
    }
    return {status: r.status, ok: r.ok, data};
  }

  function errorMessage(res) {
    const m = res.data && res.data.error && res.data.error.message;
    return m ? String(m) : 'the gateway answered ' + res.status;
  }

  // GET a list endpoint; {missing: true} when this gateway has no such endpoint (404).
  async function getList(path) {
    const res = await api('GET', path);
    if (res.status === 404) return {missing: true, data: []};
    if (!res.ok) throw new ApiError(res.status, errorMessage(res));
    return res.data || {};
  }

  // ---------- sign-in and frame ----------

  function showSignIn(message) {
    csrf = '';
    document.getElementById('loading').hidden = true;
    document.getElementById('app').hidden = true;
    document.getElementById('signin').hidden = false;
    const err = document.getElementById('signin-error');
    err.textContent = message || '';
    document.getElementById('master-key').focus();
  }

  function showApp() {
    document.getElementById('loading').hidden = true;
    document.getElementById('signin').hidden = true;
    document.getElementById('app').hidden = false;
    route();
  }

  document.getElementById('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('master-key');
    const err = document.getElementById('signin-error');
    const button = ev.target.querySelector('button');
    err.textContent = '';
    if (!input.value) {
      err.textContent = 'Enter the master key.';
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const res = await api('POST', '/ui/session', {master_key: input.value});
      if (res.ok && res.data && res.data.csrf_token) {
        csrf = res.data.csrf_token;
        input.value = '';
        if (!location.hash) location.hash = '#/overview';
        showApp();
      } else if (res.status === 429) {
        err.textContent = 'Too many wrong keys: ' + errorMessage(res);
      } else if (res.status === 401) {
        err.textContent = 'Wrong master key. ' + errorMessage(res);
      } else {
        err.textContent = errorMessage(res);
      }
    } catch (e) {
      err.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById('signout').addEventListener('click', async () => {
    try {
      await api('DELETE', '/ui/session');
    } catch (_) {
      // Signed out either way below.
    }
    showSignIn('Signed out.');
  });

  // ---------- routing ----------

  const pages = {
    overview: {title: 'Overview', render: renderOverview},
    keys: {title: 'Keys', render: renderKeys},
    models: {title: 'Models', render: renderModels},
    requests: {title: 'Requests', render: renderRequests},
    usage: {title: 'Usage', render: renderUsage},
    batches: {title: 'Jobs and batches', render: renderBatches},
  };
  let renderSeq = 0;

  function route() {
    if (document.getElementById('app').hidden) return;
    const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
    const page = pages[name] ? name : 'overview';
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = pages[page].title + ' · ai-gateway console';
    clear(main);
    const seq = ++renderSeq;
    const section = el('section', {'aria-labelledby': 'page-title'});
    const status = el('p', {class: 'status', role: 'status'});
    main.append(el('h1', {id: 'page-title'}, pages[page].title), status, section);
    main.focus({preventScroll: true});
    Promise.resolve()
      .then(() => pages[page].render(section, () => seq === renderSeq))
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) return;
        status.textContent = 'Could not load this page: ' + e.message;
        status.classList.add('error');
      });
  }
  window.addEventListener('hashchange', route);

  function refreshButton(onClick) {
    return el('button', {type: 'button', class: 'refresh', onclick: onClick}, 'Refresh');
  }

  function table(columns, rows, opts) {
    const thead = el('thead', {}, el('tr', {}, columns.map((c) => el('th', {scope: 'col'}, c))));
    const tbody = el('tbody', {}, rows);
    const t = el('table', {class: (opts && opts.class) || ''}, thead, tbody);
    return el('div', {class: 'table-wrap'}, t);
  }

  function notice(text, cls) {
    return el('p', {class: 'notice ' + (cls || '')}, text);
  }

  // ---------- charts (inline SVG) ----------

  // A bar chart of `values` (numbers) with `labels` under some bars; `fmt` formats a value.
  // `series`: [{name, values, cls}] drawn as grouped bars (one group per label).
  function barChart(title, labels, series, fmt) {
    const W = 600, H = 180, L = 56, B = 22, T = 10;
    const n = labels.length;
    const max = Math.max(0, ...series.flatMap((s) => s.values.map((v) => Number(v) || 0)));
    const top = max > 0 ? niceCeil(max) : 1;
    const plotW = W - L - 6, plotH = H - B - T;
    const groupW = n > 0 ? plotW / n : plotW;
    const barW = Math.max(1, (groupW * 0.8) / series.length);
    const s = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
      'aria-label': title + ', maximum ' + fmt(max),
    });
    s.append(svg('title', {}, title));
    for (const f of [0, 0.5, 1]) {
      const y = T + plotH * (1 - f);
      s.append(svg('line', {x1: L, x2: W - 4, y1: y, y2: y, class: 'grid'}));
      s.append(svg('text', {x: L - 6, y: y + 4, 'text-anchor': 'end', class: 'axis'}, fmt(top * f)));
    }
    series.forEach((ser, si) => {
      ser.values.forEach((v, i) => {
        const val = Number(v) || 0;
        const h = (val / top) * plotH;
        const x = L + i * groupW + groupW * 0.1 + si * barW;
        const bar = svg('rect', {
          x: x.toFixed(1), y: (T + plotH - h).toFixed(1), width: barW.toFixed(1),
          height: Math.max(0, h).toFixed(1), class: 'bar ' + (ser.cls || ''),
        });
        bar.append(svg('title', {}, `${labels[i]} ${ser.name}: ${fmt(val)}`));
        s.append(bar);
      });
    });
    const every = Math.max(1, Math.ceil(n / 6));
    labels.forEach((lab, i) => {
      if (i % every !== 0) return;
      const text = String(lab);
      s.append(svg('text', {x: L + i * groupW + groupW / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis'},
        text.length > 14 ? text.slice(0, 13) + '…' : text));
    });
    const legend = series.length > 1
      ? el('p', {class: 'legend'}, series.map((ser) => el('span', {class: 'key ' + (ser.cls || '')}, ser.name)))
      : null;
    return el('figure', {class: 'chart-box'}, el('figcaption', {}, title), s, legend);
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function compactNum(v) {
    const n = Number(v) || 0;
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + 'M';
    if (Math.abs(n) >= 1e3) return (n / 1e3).toFixed(1) + 'k';
    return Number.isInteger(n) ? String(n) : n.toFixed(2);
  }
  function compactUsd(v) {
    const n = Number(v) || 0;
    return '$' + (n >= 1 || n === 0 ? compactNum(n) : n.toPrecision(2));
  }
  function compactMs(v) {
    return compactNum(Math.round(Number(v) || 0)) + 'ms';
  }

  function tile(label, value, cls) {
    return el('div', {class: 'tile ' + (cls || '')}, el('span', {class: 'tile-label'}, label), el('span', {class: 'tile-value'}, value));
  }

  // ---------- Overview ----------

  async function renderOverview(section, current) {
    const [hour, day, deps] = await Promise.all([
      getList('/admin/stats?window=hour'),
      getList('/admin/stats?window=day'),
      getList('/admin/deployments'),
    ]);
    if (!current()) return;
    section.append(refreshButton(route));
    section.append(circuitSummary(deps.data || []));
    for (const [name, stats] of [['Last hour', hour], ['Last day', day]]) {
      const box = el('section', {class: 'window', 'aria-label': name}, el('h2', {}, name));
      if (stats.missing) {
        box.append(notice('Traffic statistics are not available on this gateway (GET /admin/stats answered 404).'));
        section.append(box);
        continue;
      }
      const t = stats.totals || {};
      const requests = Number(t.requests) || 0;
      box.append(el('div', {class: 'tiles'},
        tile('Requests', num(t.requests)),
        tile('Error rate', requests ? pct((Number(t.errors) || 0) / requests) : '—', (t.errors > 0) ? 'warn' : ''),
        tile('p50 latency', ms(t.p50_ms)),
        tile('p95 latency', ms(t.p95_ms)),
        tile('Tokens in / out', num(t.input_tokens) + ' / ' + num(t.output_tokens)),
        tile('Spend', usd(t.cost_usd)),
      ));
      const buckets = stats.buckets || [];
      const labels = buckets.map((b) => shortTime(b.start, name === 'Last day'));
      const pick = (f) => buckets.map((b) => Number(b[f]) || 0);
      box.append(el('div', {class: 'charts'},
        barChart(name + ': requests and errors', labels, [
          {name: 'requests', values: pick('requests'), cls: 's1'},
          {name: 'errors', values: pick('errors'), cls: 's3'},
        ], compactNum),
        barChart(name + ': latency p50 and p95', labels, [
          {name: 'p50', values: pick('p50_ms'), cls: 's1'},
          {name: 'p95', values: pick('p95_ms'), cls: 's2'},
        ], compactMs),
        barChart(name + ': tokens', labels, [
          {name: 'input', values: pick('input_tokens'), cls: 's1'},
          {name: 'output', values: pick('output_tokens'), cls: 's2'},
        ], compactNum),
        barChart(name + ': spend', labels, [{name: 'spend', values: pick('cost_usd'), cls: 's4'}], compactUsd),
      ));
      section.append(box);
    }
  }

  function circuitSummary(models) {
    const open = [];
    for (const m of models) {
      for (const d of m.deployments || []) {
        if (d.circuit_state && d.circuit_state !== 'closed') open.push([m, d]);
      }
    }
    const box = el('section', {class: 'circuits', 'aria-label': 'Circuits'}, el('h2', {}, 'Deployments'));
    if (open.length === 0) {
      box.append(notice('Every deployment\'s circuit is closed (' + models.length + ' models).', 'ok'));
      return box;
    }
    box.append(notice(open.length + ' deployment(s) with an open or half-open circuit:', 'alert'));
    box.append(table(['Model', 'Provider', 'Upstream model', 'Circuit', 'Retry in'],
      open.map(([m, d]) => el('tr', {class: 'circuit-open'},
        el('td', {}, m.model), el('td', {}, d.provider), el('td', {}, d.model),
        el('td', {}, el('span', {class: 'badge bad'}, d.circuit_state)),
        el('td', {}, d.circuit_retry_in_ms ? ms(d.circuit_retry_in_ms) : '—')))));
    return box;
  }

  // ---------- Keys ----------

  async function renderKeys(section, current) {
    const list = await getList('/admin/keys');
    if (!current()) return;
    const created = el('div', {class: 'created', 'aria-live': 'polite'});
    const formBox = el('div', {class: 'form-box', hidden: true});
    const toggle = el('button', {type: 'button', class: 'primary', 'aria-expanded': 'false', 'aria-controls': 'create-key-form'}, 'Create key');
    toggle.addEventListener('click', () => {
      formBox.hidden = !formBox.hidden;
      toggle.setAttribute('aria-expanded', String(!formBox.hidden));
      if (!formBox.hidden) formBox.querySelector('input').focus();
    });
    formBox.append(keyForm('create-key-form', {}, async (body, err) => {
      const res = await api('POST', '/admin/keys', body);
      if (!res.ok) {
        err.textContent = errorMessage(res);
        return;
      }
      formBox.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
      showNewKey(created, res.data);
      await refreshKeys(tableBox);
    }, 'Create'));
    const tableBox = el('div', {});
    section.append(el('div', {class: 'actions'}, toggle, refreshButton(route)), formBox, created, tableBox);
    fillKeys(tableBox, list.data || []);
  }

  async function refreshKeys(tableBox) {
    const list = await getList('/admin/keys');
    fillKeys(tableBox, list.data || []);
  }

  function showNewKey(box, rec) {
    clear(box);
    const code = el('code', {id: 'new-key', class: 'secret'}, rec.key || '');
    const copied = el('span', {class: 'muted', role: 'status'});
    const copy = el('button', {type: 'button', onclick: async () => {
      try {
        await navigator.clipboard.writeText(rec.key);
        copied.textContent = 'Copied.';
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(code);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
      }
    }}, 'Copy');
    const dismiss = el('button', {type: 'button', onclick: () => clear(box)}, 'Done');
    box.append(el('div', {class: 'card new-key', role: 'region', 'aria-label': 'New key'},
      el('p', {}, el('strong', {}, 'Key "' + (rec.name || '') + '" created. '),
        'Copy it now: it is shown this once and cannot be shown again.'),
      el('p', {class: 'secret-line'}, code, ' ', copy, ' ', copied),
      el('p', {}, dismiss)));
    copy.focus();
  }

  // A form of the key fields; `values` pre-fills them (edit); `submit(body, errNode)`.
  function keyForm(id, values, submit, label) {
    const field = (name, text, attrs, hint) => {
      const fid = id + '-' + name;
      return el('div', {class: 'field'},
        el('label', {for: fid}, text),
        el('input', Object.assign({id: fid, name}, attrs)),
        hint ? el('small', {class: 'muted'}, hint) : null);
    };
    const v = values;
    const form = el('form', {id, class: 'key-form', novalidate: true},
      v.edit ? null : field('name', 'Name', {type: 'text', required: true, autocomplete: 'off', maxlength: 200}),
      field('models', 'Models', {type: 'text', value: (v.models || ['*']).join(', ')}, 'Comma-separated globs, * for all'),
      field('rpm', 'Requests per minute', {type: 'number', min: 0, step: 1, value: v.rpm ?? ''}, 'Empty: no limit'),
      field('tpm', 'Tokens per minute', {type: 'number', min: 0, step: 1, value: v.tpm ?? ''}, 'Empty: no limit'),
      field('budget_usd', 'Budget (USD)', {type: 'number', min: 0, step: 'any', value: v.budget_usd ?? ''}, 'Empty: no budget'),
      field('budget_period', 'Budget period', {type: 'text', value: v.budget_period ?? '', placeholder: '30d'}),
      field('expires_at', 'Expires at', {type: 'text', value: v.expires_at ?? '', placeholder: '2027-01-01T00:00:00Z'}, 'RFC 3339; empty: never'),
    );
    const err = el('p', {class: 'error', role: 'alert'});
    const ok = el('button', {type: 'submit', class: 'primary'}, label);
    form.append(el('div', {class: 'actions'}, ok), err);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const get = (n) => {
        const i = form.elements.namedItem(n);
        return i ? i.value.trim() : '';
      };
      const body = {};
      if (!v.edit) {
        if (!get('name')) {
          err.textContent = 'A name is required.';
          return;
        }
        body.name = get('name');
      }
      body.models = get('models') ? get('models').split(',').map((s) => s.trim()).filter(Boolean) : ['*'];
      for (const n of ['rpm', 'tpm']) {
        const s = get(n);
        if (s === '') {
          if (v.edit) body[n] = null;
        } else if (!/^\d+$/.test(s)) {
          err.textContent = n + ': a whole number, or empty.';
          return;
        } else body[n] = Number(s);
      }
      const b = get('budget_usd');
      if (b === '') {
        if (v.edit) body.budget_usd = null;
      } else if (!isFinite(Number(b)) || Number(b) < 0) {
        err.textContent = 'Budget: a number of dollars, or empty.';
        return;
      } else body.budget_usd = Number(b);
      for (const n of ['budget_period', 'expires_at']) {
        const s = get(n);
        if (s !== '') body[n] = s;
        else if (v.edit) body[n] = null;
      }
      ok.disabled = true;
      try {
        await submit(body, err);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 401)) err.textContent = e.message;
      } finally {
        ok.disabled = false;
      }
    });
    return form;
  }

  function fillKeys(box, keys) {
    clear(box);
    if (keys.length === 0) {
      box.append(notice('No keys yet: create one above.'));
      return;
    }
    const rows = [];
    for (const k of keys) {
      const limits = [k.rpm != null ? num(k.rpm) + ' rpm' : null, k.tpm != null ? num(k.tpm) + ' tpm' : null]
        .filter(Boolean).join(', ') || 'none';
      const budget = k.budget_usd != null ? usd(k.budget_usd) + (k.budget_period ? ' / ' + k.budget_period : '') : 'none';
      const state = k.revoked ? el('span', {class: 'badge bad'}, 'revoked')
        : (k.expires_at && Date.parse(k.expires_at) < Date.now()) ? el('span', {class: 'badge warn'}, 'expired')
          : el('span', {class: 'badge good'}, 'active');
      const actions = el('td', {class: 'row-actions'});
      const row = el('tr', {'data-key-id': k.id},
        el('td', {}, el('span', {class: 'key-name'}, k.name), k.key_prefix ? el('small', {class: 'muted block'}, k.key_prefix.endsWith('…') ? k.key_prefix : k.key_prefix + '…') : null),
        el('td', {}, k.source === 'config' ? 'file' : 'admin'),
        el('td', {}, (k.models || [k.source === 'config' ? '—' : '*']).join(', ')),
        el('td', {}, limits),
        el('td', {}, budget),
        el('td', {}, usd(k.spend_usd)),
        el('td', {}, k.usage ? num(k.usage.requests) : '—'),
        el('td', {}, k.expires_at || 'never'),
        el('td', {}, state),
        actions);
      rows.push(row);
      if (k.source === 'config') {
        actions.append(el('small', {class: 'muted'}, 'in the configuration file'));
        continue;
      }
      if (k.revoked) continue;
      const editRow = el('tr', {class: 'edit-row', hidden: true}, el('td', {colspan: 10}));
      const edit = el('button', {type: 'button', 'aria-expanded': 'false'}, 'Edit');
      edit.setAttribute('aria-label', 'Edit ' + k.name);
      edit.addEventListener('click', () => {
        editRow.hidden = !editRow.hidden;
        edit.setAttribute('aria-expanded', String(!editRow.hidden));
        const cell = editRow.firstChild;
        clear(cell);
        if (!editRow.hidden) {
          cell.append(keyForm('edit-' + k.id, Object.assign({edit: true}, k), async (body, err) => {
            const res = await api('PATCH', '/admin/keys/' + encodeURIComponent(k.id), body);
            if (!res.ok) {
              err.textContent = errorMessage(res);
              return;
            }
            await refreshKeys(box);
          }, 'Save'));
          cell.querySelector('input').focus();
        }
      });
      const revoke = el('button', {type: 'button', class: 'danger'}, 'Revoke');
      revoke.setAttribute('aria-label', 'Revoke ' + k.name);
      let armed = false;
      revoke.addEventListener('click', async () => {
        if (!armed) {
          armed = true;
          revoke.textContent = 'Confirm revoke';
          revoke.setAttribute('aria-label', 'Confirm revoking ' + k.name);
          return;
        }
        revoke.disabled = true;
        try {
          const res = await api('DELETE', '/admin/keys/' + encodeURIComponent(k.id));
          if (!res.ok) {
            actions.append(el('span', {class: 'error', role: 'alert'}, errorMessage(res)));
            return;
          }
          await refreshKeys(box);
        } catch (e) {
          if (!(e instanceof ApiError && e.status === 401)) actions.append(el('span', {class: 'error'}, e.message));
        }
      });
      actions.append(edit, ' ', revoke);
      rows.push(editRow);
    }
    box.append(table(['Name', 'Source', 'Models', 'Limits', 'Budget', 'Spend', 'Requests', 'Expires', 'State', ''], rows, {class: 'keys'}));
  }

  // ---------- Models ----------

  async function renderModels(section, current) {
    const list = await getList('/admin/deployments');
    if (!current()) return;
    section.append(refreshButton(route));
    const models = list.data || [];
    if (models.length === 0) {
      section.append(notice('No models are configured.'));
      return;
    }
    for (const m of models) {
      const rows = (m.deployments || []).map((d) => el('tr', {class: d.circuit_state !== 'closed' ? 'circuit-open' : ''},
        el('td', {}, d.provider), el('td', {}, d.provider_type || ''), el('td', {}, d.model),
        el('td', {}, el('span', {class: 'badge ' + (d.circuit_state === 'closed' ? 'good' : 'bad')}, d.circuit_state)),
        el('td', {}, ms(d.latency_ewma_ms)), el('td', {}, pct(d.error_rate)),
        el('td', {}, num(d.in_flight)), el('td', {}, num(d.requests)),
        el('td', {}, [d.priority != null ? 'priority ' + d.priority : null, d.weight != null ? 'weight ' + d.weight : null].filter(Boolean).join(', '))));
      section.append(el('section', {class: 'model card'},
        el('h2', {}, m.model),
        el('p', {class: 'muted'}, 'routing: ' + (m.routing || 'default') + (m.fallbacks && m.fallbacks.length ? ' · fallbacks: ' + m.fallbacks.join(', ') : '')),
        table(['Provider', 'Type', 'Upstream model', 'Circuit', 'Latency (EWMA)', 'Error rate', 'In flight', 'Requests', 'Routing'], rows)));
    }
  }

  // ---------- Requests ----------

  async function renderRequests(section, current) {
    const form = el('form', {class: 'filters', 'aria-label': 'Filter requests'},
      filterField('f-key', 'Key', 'key'), filterField('f-model', 'Model', 'model'),
      filterField('f-status', 'Status', 'status', '200, 4xx…'),
      el('div', {class: 'field'}, el('span', {}, ' '), el('button', {type: 'submit', class: 'primary'}, 'Filter')));
    const results = el('div', {});
    section.append(form, results);
    const load = async (after) => {
      const q = new URLSearchParams({limit: '50'});
      for (const n of ['key', 'model', 'status']) {
        const v = form.elements.namedItem(n).value.trim();
        if (v) q.set(n, v);
      }
      if (after) q.set('after', after);
      const res = await api('GET', '/admin/requests?' + q.toString());
      if (!current()) return;
      if (res.status === 404) {
        clear(results);
        results.append(notice('The request log is not available on this gateway (GET /admin/requests answered 404).'));
        return;
      }
      if (!res.ok) {
        if (!after) clear(results);
        results.append(el('p', {class: 'error', role: 'alert'}, errorMessage(res)));
        return;
      }
      if (!after) clear(results);
      const entries = (res.data && res.data.data) || [];
      let tbody = results.querySelector('tbody');
      if (!tbody) {
        if (entries.length === 0) {
          results.append(notice('No requests match.'));
          return;
        }
        const t = table(['', 'Time', 'Endpoint', 'Key', 'Model', 'Provider', 'Status', 'Latency', 'Tokens in/out', 'Cost'], [], {class: 'requests'});
        results.append(t);
        tbody = t.querySelector('tbody');
      }
      for (const e of entries) appendRequest(tbody, e);
      const more = results.querySelector('.more');
      if (more) more.remove();
      if (res.data && res.data.has_more && entries.length) {
        const last = entries[entries.length - 1].id;
        results.append(el('p', {class: 'more'}, el('button', {type: 'button', onclick: () => load(last).catch(showErr)}, 'Load more')));
      }
    };
    const showErr = (e) => {
      if (!(e instanceof ApiError && e.status === 401)) results.append(el('p', {class: 'error'}, e.message));
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      load(null).catch(showErr);
    });
    await load(null);
  }

  function filterField(id, label, name, placeholder) {
    return el('div', {class: 'field'}, el('label', {for: id}, label),
      el('input', {id, name, type: 'text', placeholder: placeholder || '', autocomplete: 'off'}));
  }

  function appendRequest(tbody, e) {
    const detail = el('tr', {class: 'detail', hidden: true},
      el('td', {colspan: 10}, el('pre', {}, JSON.stringify(e, null, 2))));
    const toggle = el('button', {type: 'button', class: 'expand', 'aria-expanded': 'false'}, '▸');
    toggle.setAttribute('aria-label', 'Details of ' + e.id);
    toggle.addEventListener('click', () => {
      detail.hidden = !detail.hidden;
      toggle.setAttribute('aria-expanded', String(!detail.hidden));
      toggle.textContent = detail.hidden ? '▸' : '▾';
    });
    const bad = Number(e.status) >= 400;
    tbody.append(el('tr', {class: 'entry' + (bad ? ' failed' : ''), 'data-request-id': e.id},
      el('td', {}, toggle), el('td', {}, time(e.created_at)), el('td', {}, e.endpoint || ''),
      el('td', {}, e.key || '—'), el('td', {}, e.model || '—'), el('td', {}, e.provider || '—'),
      el('td', {}, el('span', {class: 'badge ' + (bad ? 'bad' : 'good')}, e.status)),
      el('td', {}, ms(e.latency_ms)), el('td', {}, num(e.input_tokens) + ' / ' + num(e.output_tokens)),
      el('td', {}, usd(e.cost_usd))), detail);
  }

  // ---------- Usage ----------

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  async function renderUsage(section, current) {
    const today = new Date();
    const weekAgo = new Date(today.getTime() - 6 * 86400000);
    const groups = ['day', 'key', 'model', 'provider'];
    const form = el('form', {class: 'filters', 'aria-label': 'Usage report range'},
      el('div', {class: 'field'}, el('label', {for: 'u-from'}, 'From'), el('input', {id: 'u-from', name: 'from', type: 'date', value: isoDay(weekAgo), required: true})),
      el('div', {class: 'field'}, el('label', {for: 'u-to'}, 'To'), el('input', {id: 'u-to', name: 'to', type: 'date', value: isoDay(today), required: true})),
      el('fieldset', {class: 'field group-by'}, el('legend', {}, 'Group by'),
        groups.map((g) => el('label', {class: 'check'},
          el('input', {type: 'checkbox', name: 'group_by', value: g, checked: g !== 'provider'}), ' ' + g))),
      el('div', {class: 'field'}, el('span', {}, ' '), el('button', {type: 'submit', class: 'primary'}, 'Show')));
    const results = el('div', {});
    section.append(form, results);
    const load = async () => {
      const from = form.elements.namedItem('from').value;
      const to = form.elements.namedItem('to').value;
      const by = [...form.querySelectorAll('input[name=group_by]:checked')].map((i) => i.value);
      const q = new URLSearchParams({from, to});
      // Always sent: none ticked asks for one row of totals (the default would group).
      q.set('group_by', by.join(','));
      const res = await api('GET', '/admin/usage?' + q.toString());
      if (!current()) return;
      clear(results);
      if (res.status === 404) {
        results.append(notice('The usage report is not available on this gateway (GET /admin/usage answered 404).'));
        return;
      }
      if (!res.ok) {
        results.append(el('p', {class: 'error', role: 'alert'}, errorMessage(res)));
        return;
      }
      showUsage(results, (res.data && res.data.data) || [], by, from, to);
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      load().catch((e) => {
        if (!(e instanceof ApiError && e.status === 401)) results.append(el('p', {class: 'error'}, e.message));
      });
    });
    await load();
  }

  const USAGE_FIELDS = ['requests', 'errors', 'cache_hits', 'input_tokens', 'output_tokens', 'cost_usd'];

  function showUsage(box, rows, by, from, to) {
    if (rows.length === 0) {
      box.append(notice('No usage in this range.'));
      return;
    }
    // Charts: the totals along each grouped dimension (day, key, model, provider).
    const charts = el('div', {class: 'charts'});
    for (const dim of by) {
      const totals = new Map();
      for (const r of rows) {
        const k = String(r[dim] ?? '');
        const t = totals.get(k) || {requests: 0, cost_usd: 0, tokens: 0};
        t.requests += Number(r.requests) || 0;
        t.cost_usd += Number(r.cost_usd) || 0;
        t.tokens += (Number(r.input_tokens) || 0) + (Number(r.output_tokens) || 0);
        totals.set(k, t);
      }
      // Days in order; the others by spend, the 12 largest.
      let labels = [...totals.keys()];
      if (dim === 'day') labels.sort();
      else labels = labels.sort((a, b) => totals.get(b).cost_usd - totals.get(a).cost_usd || totals.get(b).requests - totals.get(a).requests).slice(0, 12);
      const vals = (f) => labels.map((l) => totals.get(l)[f]);
      charts.append(barChart('Requests by ' + dim, labels, [{name: 'requests', values: vals('requests'), cls: 's1'}], compactNum));
      if (dim === 'day') charts.append(barChart('Tokens by day', labels, [{name: 'tokens', values: vals('tokens'), cls: 's2'}], compactNum));
      charts.append(barChart('Spend by ' + dim, labels, [{name: 'spend', values: vals('cost_usd'), cls: 's4'}], compactUsd));
    }
    box.append(charts);
    const cols = [...by, ...USAGE_FIELDS];
    const csv = [cols.join(',')].concat(rows.map((r) => cols.map((c) => csvCell(r[c])).join(','))).join('\r\n') + '\r\n';
    const link = el('a', {class: 'button', download: `usage-${from}-${to}.csv`, href: '#'}, 'Download CSV');
    link.addEventListener('click', () => {
      link.href = URL.createObjectURL(new Blob([csv], {type: 'text/csv'}));
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    });
    box.append(el('p', {class: 'actions'}, link));
    const fmt = {cost_usd: usd};
    const cell = (r, c) => (fmt[c] || (USAGE_FIELDS.includes(c) ? num : String))(r[c] ?? '');
    box.append(table(cols, rows.map((r) => el('tr', {}, cols.map((c) => el('td', {}, cell(r, c))))), {class: 'usage'}));
  }

  function csvCell(v) {
    if (v === undefined || v === null) return '';
    let s = String(v);
    // Keep spreadsheet programs from running cell text as a formula.
    if (/^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // ---------- Jobs and batches ----------

  async function renderBatches(section, current) {
    const list = await getList('/admin/batches');
    if (!current()) return;
    section.append(refreshButton(route));
    section.append(notice('Async jobs (POST /v1/async/…) are not listed here: look one up with GET /v1/jobs/{id} using the key that created it.'));
    if (list.missing) {
      section.append(notice('Batches are not available on this gateway (GET /admin/batches answered 404).'));
      return;
    }
    const batches = list.data || [];
    if (batches.length === 0) {
      section.append(notice('No batches.'));
      return;
    }
    section.append(table(['Batch', 'Status', 'Endpoint', 'Progress', 'Created', 'Finished'],
      batches.map((b) => {
        const c = b.request_counts || {};
        const total = Number(c.total) || 0;
        const done = (Number(c.completed) || 0) + (Number(c.failed) || 0);
        const bar = el('progress', {max: total || 1, value: done});
        bar.setAttribute('aria-label', 'Progress of ' + b.id);
        return el('tr', {'data-batch-id': b.id},
          el('td', {}, el('code', {}, b.id), b.metadata && b.metadata.key ? el('small', {class: 'muted block'}, String(b.metadata.key)) : null),
          el('td', {}, el('span', {class: 'badge ' + (b.status === 'failed' || b.status === 'expired' ? 'bad' : b.status === 'completed' ? 'good' : 'warn')}, b.status)),
          el('td', {}, b.endpoint || ''),
          el('td', {}, bar, ' ', `${done} / ${total}`, c.failed ? ` (${c.failed} failed)` : ''),
          el('td', {}, time(b.created_at)),
          el('td', {}, time(b.completed_at || b.failed_at || b.cancelled_at || b.expired_at)));
      }), {class: 'batches'}));
  }

  // ---------- start ----------

  (async () => {
    try {
      const res = await api('GET', '/ui/session');
      if (res.status === 404) {
        showSignIn(errorMessage(res));
        document.getElementById('signin-form').querySelector('button').disabled = true;
        return;
      }
      if (res.ok && res.data && res.data.csrf_token) {
        csrf = res.data.csrf_token;
        showApp();
      } else {
        showSignIn('');
      }
    } catch (e) {
      showSignIn(e.message);
    }
  })();
})();
