// orderstream console: live regions, periodic refreshes, streamed progress.
// Everything it inserts is either HTML rendered (and escaped) by the server
// or set as text, never markup built here.
(function () {
  'use strict';
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';
  var sleep = function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); };

  function toLogin() {
    location.href = '/console/login?next=' + encodeURIComponent(location.pathname + location.search);
  }

  function withParam(url, k, v) {
    var sep = url.indexOf('?') < 0 ? '?' : (/[?&]$/.test(url) ? '' : '&');
    return url + sep + k + '=' + encodeURIComponent(v);
  }

  function get(url) {
    return fetch(url, { headers: { 'X-Console': '1' }, credentials: 'same-origin' });
  }

  // data-watch: follow the server's events (Server-Sent Events) for this
  // region; each event of type data-event carries the region's new content,
  // and the ids of data-also name regions to reload from their data-src
  // then. The browser resumes after the last event id by itself; a stream
  // the server refused is retried after a pause, unless the session ended
  // (an EventSource cannot see the answer's status, so the page asks):
  // then the user is sent to sign in, not left with a page that retries
  // for ever.
  function watch(el) {
    var pos = el.dataset.position || '0';
    var also = (el.dataset.also || '').split(' ').filter(Boolean);
    var es = null;
    function connect() {
      es = new EventSource(withParam(el.dataset.watch, 'since', pos));
      es.addEventListener(el.dataset.event, function (ev) {
        pos = ev.lastEventId || pos;
        el.innerHTML = ev.data;
        el.hidden = false;
        also.forEach(refresh);
      });
      // Nothing this region shows changed up to there: resumed from it.
      es.addEventListener('position', function (ev) { pos = ev.lastEventId || pos; });
      es.onerror = function () {
        if (!es || es.readyState !== EventSource.CLOSED) { return; }
        get(location.pathname + location.search).then(function (res) {
          if (res.status === 401) { toLogin(); return; }
          setTimeout(connect, 3000);
        }, function () { setTimeout(connect, 3000); });
      };
    }
    // A page kept in the back/forward cache must not hold its stream (and
    // the server's watch) open; it resumes from its last event when shown.
    window.addEventListener('pagehide', function () { if (es) { es.close(); es = null; } });
    window.addEventListener('pageshow', function (ev) { if (ev.persisted && !es) { connect(); } });
    connect();
  }

  // refresh replaces the content of the element with this id by what its
  // data-src answers.
  async function refresh(id) {
    var el = document.getElementById(id);
    if (!el || !el.dataset.src) { return; }
    var res = await get(el.dataset.src);
    if (res.status === 200) { el.innerHTML = await res.text(); }
  }

  // data-refresh: reload the region every data-interval milliseconds.
  async function periodic(el) {
    var every = parseInt(el.dataset.interval, 10) || 2000;
    for (;;) {
      await sleep(every);
      try {
        var res = await get(el.dataset.refresh);
        if (res.status === 401) { toLogin(); return; }
        if (res.status === 200) { el.innerHTML = await res.text(); }
      } catch (e) { /* try again next time */ }
    }
  }

  // data-stream: submit the form with fetch and read newline-delimited JSON
  // progress lines: {percent, text, item, error, done}.
  async function stream(form, ev) {
    ev.preventDefault();
    var name = form.dataset.stream;
    var button = form.querySelector('button[type="submit"]');
    var bar = document.getElementById(name + '-progress');
    var status = document.getElementById(name + '-status');
    var items = document.getElementById(name + '-items');
    button.disabled = true;
    status.classList.remove('bad');
    if (items) { items.textContent = ''; }
    bar.value = 0;
    var res;
    try {
      res = await fetch(form.action, {
        method: form.method.toUpperCase(),
        headers: { 'Accept': 'application/x-ndjson', 'X-CSRF-Token': csrf, 'X-Console': '1' },
        credentials: 'same-origin'
      });
    } catch (e) {
      status.textContent = 'The console could not be reached.';
      button.disabled = false;
      return;
    }
    if (res.status === 401) { toLogin(); return; }
    if (!res.ok) {
      status.textContent = await res.text();
      status.classList.add('bad');
      button.disabled = false;
      return;
    }
    var reader = res.body.getReader();
    var decoder = new TextDecoder();
    var buf = '';
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) { break; }
      buf += decoder.decode(chunk.value, { stream: true });
      var nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        var line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.item && items) {
          var li = document.createElement('li');
          li.textContent = line.item;
          items.appendChild(li);
          continue;
        }
        bar.value = line.percent || 0;
        bar.textContent = Math.round(bar.value) + '%';
        status.textContent = line.text || '';
        if (line.error) { status.classList.add('bad'); }
      }
    }
    button.disabled = false;
  }

  function start() {
    document.querySelectorAll('[data-watch]').forEach(watch);
    document.querySelectorAll('[data-refresh]').forEach(periodic);
    document.querySelectorAll('form[data-stream]').forEach(function (f) {
      f.addEventListener('submit', function (ev) { stream(f, ev); });
    });
    document.querySelectorAll('input[data-output]').forEach(function (input) {
      var out = document.getElementById(input.dataset.output);
      input.addEventListener('input', function () { out.textContent = input.value; });
    });
  }

  start();
}());
