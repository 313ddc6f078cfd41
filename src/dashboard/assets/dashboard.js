// herald's dashboard: one WebSocket (/dashboard/ws, authorized by the cookie the page
// set) brings a "hello" with the samples so far, then a "tick" every second; the
// console's commands go back on it. No library: the chart is a plain canvas.
'use strict';

(() => {
  // The token, if it came in the address, leaves it (the cookie holds it now).
  if (location.search.includes('token=')) window.history.replaceState(null, '', location.pathname);

  const $ = (id) => document.getElementById(id);
  const fmt = (n) => (n === null || n === undefined ? '–'
    : typeof n === 'number' && !Number.isInteger(n) ? n.toFixed(n < 10 ? 2 : 1)
      : Number(n).toLocaleString('en-US'));
  const dig = (o, path) => path.split('.').reduce((v, k) => (v == null ? v : v[k]), o);
  let samples = [];
  let span = 300; // seconds the chart spans (the server's ring)
  let ws;
  let watched = null; // {namespace, channel}

  function send(cmd) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(cmd));
  }

  function uptime(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function showFigures(f) {
    for (const el of document.querySelectorAll('[data-k]')) {
      const v = dig(f, el.dataset.k);
      el.textContent = v == null ? '–' : fmt(v) + (el.dataset.unit ? ' ' + el.dataset.unit : '');
    }
    $('uptime').textContent = uptime(f.uptime_s);
    const a = f.auth;
    $('auth-shield').textContent = fmt(a.refusals_reused + a.rate_limited + a.busy + a.headers_too_large);
    const r = f.recovery;
    $('rec-socketio').textContent = `${fmt(r.socketio_refused)} / ${fmt(r.socketio_kept)}`;
    $('rec-pusher').textContent = `${fmt(r.pusher_refused)} / ${fmt(r.pusher_kept)}`;
    $('rec-replayed').textContent = fmt(r.socketio_replayed + r.pusher_replayed);
    $('channel-count').textContent = fmt(f.channel_count);
    const body = $('channels').tBodies[0];
    body.replaceChildren();
    for (const c of f.channels) {
      const tr = document.createElement('tr');
      tr.dataset.namespace = c.namespace;
      tr.dataset.channel = c.channel;
      cell(tr, c.namespace, 'muted');
      cell(tr, c.channel);
      cell(tr, fmt(c.socketio), 'num');
      cell(tr, fmt(c.pusher), 'num');
      cell(tr, fmt(c.resp), 'num');
      if (watched && watched.channel === c.channel && watched.namespace === c.namespace) tr.className = 'on';
      body.appendChild(tr);
    }
    const apps = $('apps').tBodies[0];
    apps.replaceChildren();
    for (const app of f.apps) {
      const tr = document.createElement('tr');
      cell(tr, app.id);
      cell(tr, app.namespace, 'muted');
      cell(tr, fmt(app.connections), 'num');
      cell(tr, fmt(app.channels), 'num');
      apps.appendChild(tr);
    }
  }

  function showSample(s) {
    $('pub-rate').textContent = fmt(s.published_per_s);
    $('del-rate').textContent = fmt(s.delivered_per_s);
    $('auth-last').textContent = s.auth_requests
      ? `${fmt(s.auth_mean_ms)} ms / ≤ ${s.auth_p95_ms == null ? '>10 s' : fmt(s.auth_p95_ms) + ' ms'}`
      : 'no request';
  }

  // The chart: both rates over the ring's span, newest at the right.
  function niceMax(v) {
    if (v <= 1) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  function draw() {
    const canvas = $('chart');
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 56, right = 8, top = 10, bottom = 22;
    const pw = w - left - right, ph = h - top - bottom;
    const max = niceMax(Math.max(1, ...samples.map((s) => Math.max(s.published_per_s, s.delivered_per_s))));
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#8a94a6';
    g.strokeStyle = '#e3e7ee';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + ph - (ph * i) / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(left + pw, y); g.stroke();
      g.textAlign = 'right'; g.textBaseline = 'middle';
      g.fillText(fmt((max * i) / 4), left - 6, y);
    }
    g.textAlign = 'center'; g.textBaseline = 'top';
    const minutes = span / 60;
    for (let m = 0; m <= minutes; m++) {
      const x = left + pw - (pw * m * 60) / span;
      g.fillText(m ? `-${m}m` : 'now', x, top + ph + 6);
    }
    const line = (key, color) => {
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      samples.forEach((s, i) => {
        const x = left + pw - (pw * (samples.length - 1 - i)) / (span - 1);
        const y = top + ph - (ph * s[key]) / max;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    };
    line('delivered_per_s', '#2f9e6f');
    line('published_per_s', '#3b6fd4');
    // A red mark under each second in which slow consumers were disconnected.
    g.fillStyle = '#b5473a';
    samples.forEach((s, i) => {
      if (!s.slow_dropped) return;
      const x = left + pw - (pw * (samples.length - 1 - i)) / (span - 1);
      g.fillRect(x - 1.5, top + ph - 6, 3, 6);
    });
  }

  function logLine(kind, text, detail) {
    const li = document.createElement('li');
    li.className = kind;
    const time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    li.appendChild(time);
    const b = document.createElement('span');
    b.textContent = text;
    li.appendChild(b);
    if (detail) {
      const pre = document.createElement('pre');
      pre.textContent = detail;
      li.appendChild(pre);
    }
    const log = $('console-log');
    log.prepend(li);
    while (log.children.length > 200) log.lastChild.remove();
  }

  // Watched events are drawn five times a second, at most 20 each time: a busy channel
  // cannot freeze the page (the rest are counted).
  let pending = [];
  let flushing = null;
  function flushEvents() {
    flushing = null;
    const shown = pending.slice(-20);
    if (pending.length > shown.length) logLine('skipped', `${pending.length - shown.length} more events not drawn`);
    for (const msg of shown) {
      logLine(`event ${msg.origin}`, `${msg.channel} #${msg.seq ?? '–'} (${msg.origin})${msg.truncated ? ' [cut]' : ''}`, pretty(msg.payload));
    }
    pending = [];
  }

  function pretty(payload) {
    try { return JSON.stringify(JSON.parse(payload)); } catch { return payload; }
  }

  function showMembers(m) {
    if (!watched || m.channel !== watched.channel) return;
    $('members-box').hidden = false;
    $('members-count').textContent = `(${m.members.length})`;
    const ul = $('members');
    ul.replaceChildren();
    for (const member of m.members) {
      const li = document.createElement('li');
      li.textContent = `${JSON.stringify(member.user_id)} ${member.user_info == null ? '' : JSON.stringify(member.user_info)}`;
      li.title = member.scope;
      ul.appendChild(li);
    }
  }

  // With --cluster: every node's summary (asked through the backplane every 2 s).
  function showNodes(msg) {
    $('nodes-panel').hidden = false;
    const notes = [];
    if (msg.error) notes.push(msg.error);
    if (msg.missing) notes.push(`${msg.missing} node(s) did not answer in time`);
    if (msg.silent) notes.push(`${msg.silent} node(s) without the dashboard on`);
    $('nodes-note').textContent = notes.length ? `(${notes.join('; ')})` : `(${msg.nodes.length})`;
    const body = $('nodes').tBodies[0];
    body.replaceChildren();
    for (const n of msg.nodes) {
      const tr = document.createElement('tr');
      if (n.run === msg.me) tr.className = 'me';
      cell(tr, n.node + (n.run === msg.me ? ' (this one)' : ''));
      const c = n.connections;
      for (const v of [c.socketio, c.pusher, c.resp, n.channel_count, n.published_per_s,
        n.delivered_per_s, n.published, n.slow_consumers_dropped, n.webhooks_pending]) cell(tr, fmt(v), 'num');
      cell(tr, uptime(n.uptime_s), 'num');
      body.appendChild(tr);
    }
  }

  function askMembers() {
    if (watched && watched.channel.startsWith('presence-')) send({ op: 'members', ...watched });
  }

  function onMessage(msg) {
    switch (msg.type) {
      case 'hello': {
        span = msg.history;
        samples = msg.samples;
        $('version').textContent = msg.version;
        $('chart-span').textContent = `${Math.round(span / 60)} minutes`;
        if (msg.cluster) $('cluster-note').textContent = ' · one node of a cluster: the figures below are this node\'s, the nodes table every node\'s';
        const sel = $('namespace');
        sel.replaceChildren();
        for (const ns of msg.namespaces) {
          const o = document.createElement('option');
          o.value = o.textContent = ns;
          sel.appendChild(o);
        }
        showFigures(msg.figures);
        if (samples.length) showSample(samples[samples.length - 1]);
        draw();
        break;
      }
      case 'tick':
        samples.push(msg.sample);
        while (samples.length > span) samples.shift();
        showSample(msg.sample);
        showFigures(msg.figures);
        draw();
        askMembers();
        break;
      case 'event':
        pending.push(msg);
        if (!flushing) flushing = setTimeout(flushEvents, 200);
        break;
      case 'watching':
        watched = msg.channel ? { namespace: msg.namespace, channel: msg.channel } : null;
        $('watching').textContent = watched ? `Watching ${watched.namespace} / ${watched.channel}` : 'Watching nothing.';
        $('members-box').hidden = true;
        askMembers();
        break;
      case 'nodes':
        showNodes(msg);
        break;
      case 'published':
        $('pub-result').textContent = `Published ${msg.event} on ${msg.channel}: ${msg.receivers} receiver(s) on this node.`;
        break;
      case 'members':
        showMembers(msg);
        break;
      case 'error':
        logLine('error', msg.message);
        $('pub-result').textContent = msg.message;
        break;
      default:
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${scheme}//${location.host}/dashboard/ws`);
    ws.onopen = () => {
      $('status').textContent = 'live';
      $('status').className = 'status on';
      if (watched) send({ op: 'watch', ...watched });
    };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = () => {
      $('status').textContent = 'disconnected, retrying…';
      $('status').className = 'status off';
      setTimeout(connect, 2000);
    };
  }

  $('watch-form').addEventListener('submit', (e) => {
    e.preventDefault();
    send({ op: 'watch', namespace: $('namespace').value, channel: $('watch-channel').value.trim() });
  });
  $('unwatch-btn').addEventListener('click', () => send({ op: 'unwatch' }));
  $('publish-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const channel = watched ? watched.channel : $('watch-channel').value.trim();
    const namespace = watched ? watched.namespace : $('namespace').value;
    send({ op: 'publish', namespace, channel, event: $('pub-event').value.trim(), data: $('pub-data').value });
  });
  $('channels').addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-channel]');
    if (!tr) return;
    $('namespace').value = tr.dataset.namespace;
    $('watch-channel').value = tr.dataset.channel;
    send({ op: 'watch', namespace: tr.dataset.namespace, channel: tr.dataset.channel });
  });
  window.addEventListener('resize', draw);
  connect();
})();
