"""The style sheet and the scripts of a report, written beside its pages.

Plain CSS and JavaScript, no library and no network: the pages open from disk
(``file://``).  Data for the interactive parts is a ``.js`` file that assigns a
global (``window.LANDSCAPE = ...``) because browsers refuse ``fetch()`` of a
local JSON file under ``file://``.
"""

from __future__ import annotations

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1220px;
       padding: 0 16px 40px; color: #1d1d1f; background: #fbfbfa; }
h1 { font-size: 1.5em; margin: 18px 0 6px; }
h2 { font-size: 1.2em; margin: 22px 0 8px; border-bottom: 1px solid #ddd; }
nav { margin: 10px 0; } a { color: #0b57a4; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e3e3; text-align: left; }
th button { font: inherit; font-weight: 600; background: none; border: 0; cursor: pointer;
            padding: 0; color: inherit; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
.controls { margin: 8px 0; display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
.figure img { max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #d6d6d6; border-radius: 6px; padding: 8px 10px; }
.card h3 { font-size: 1em; margin: 0 0 4px; }
.card img { image-rendering: pixelated; border: 1px solid #ccc; }
.card img.max { border: 2px solid #c0392b; margin-left: 10px; }
.card table { font-size: 0.85em; }
.peers { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 6px; border-top: 1px dashed #bbb;
         padding-top: 6px; }
.peer { font-size: 0.8em; margin: 0; }
.muted { color: #666; font-size: 0.88em; }
.tok { padding: 0 1px; border-radius: 2px; font-family: ui-monospace, monospace; }
.pager button, .answer button { font: inherit; margin: 2px; padding: 3px 10px; }
.answer fieldset { border: 0; padding: 0; margin: 4px 0; }
.answer legend { font-size: 0.85em; color: #444; }
.answer label { margin-right: 10px; }
.done { outline: 2px solid #2a8a3a; }
:focus-visible { outline: 3px solid #f0a000; }
"""

# Index table: sort by a column (click or keyboard), filter rows by a text box.
TABLE_JS = """
(function () {
  function cellValue(td) {
    var v = td.getAttribute('data-value');
    if (v === null) v = td.textContent.trim();
    var n = Number(v);
    return v !== '' && !isNaN(n) ? n : v.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll('th').forEach(function (th, col) {
      var button = th.querySelector('button');
      if (!button) return;
      button.addEventListener('click', function () {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var filter = document.getElementById('filter');
  if (filter) {
    filter.addEventListener('input', function () {
      var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
      document.querySelectorAll('table.sortable tbody tr').forEach(function (row) {
        var text = row.textContent.toLowerCase();
        row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      });
    });
  }
})();
"""

# Cards in pages of PAGE: only the current page's cards are shown (their images
# are lazy, so hidden pages load nothing).
PAGER_JS = """
(function () {
  var PAGE = 48;
  document.querySelectorAll('.cards[data-paged]').forEach(function (box) {
    var cards = Array.prototype.slice.call(box.children);
    if (cards.length <= PAGE) return;
    var pages = Math.ceil(cards.length / PAGE), page = 0;
    var nav = document.createElement('div');
    nav.className = 'pager';
    nav.setAttribute('role', 'navigation');
    nav.setAttribute('aria-label', 'pages of cards');
    var prev = document.createElement('button'), next = document.createElement('button');
    var label = document.createElement('span');
    prev.textContent = 'previous'; next.textContent = 'next';
    label.setAttribute('aria-live', 'polite');
    function show() {
      cards.forEach(function (c, i) { c.hidden = Math.floor(i / PAGE) !== page; });
      label.textContent = ' page ' + (page + 1) + ' of ' + pages + ' ';
      prev.disabled = page === 0; next.disabled = page === pages - 1;
    }
    prev.addEventListener('click', function () { page--; show(); });
    next.addEventListener('click', function () { page++; show(); });
    nav.appendChild(prev); nav.appendChild(label); nav.appendChild(next);
    box.parentNode.insertBefore(nav, box);
    show();
  });
})();
"""

# t-SNE: the unit selector swaps the heatmap image (window.LANDSCAPE_TSNE).
TSNE_JS = """
(function () {
  var data = window.LANDSCAPE_TSNE, select = document.getElementById('unit');
  var img = document.getElementById('heatmap');
  if (!data || !select || !img) return;
  select.addEventListener('change', function () {
    var u = data.units[select.selectedIndex];
    img.src = u.image;
    img.alt = 't-SNE map coloured by the activation of unit ' + u.unit;
  });
})();
"""

# Blind test: answers in localStorage, exported as a JSON download.
BLIND_JS = """
(function () {
  var meta = window.LANDSCAPE_BLIND, store = 'landscape-blind-' + meta.blind_id;
  var answers = {};
  try { answers = JSON.parse(localStorage.getItem(store) || '{}'); } catch (e) { answers = {}; }
  function save() {
    localStorage.setItem(store, JSON.stringify(answers));
    var n = Object.keys(answers).filter(function (k) { return answers[k].label; }).length;
    document.getElementById('progress').textContent = n + ' of ' + meta.cards.length + ' answered';
  }
  meta.cards.forEach(function (id) {
    var card = document.getElementById(id);
    card.querySelectorAll('input').forEach(function (input) {
      var a = answers[id] || {};
      if (input.name === id + '-label' && a.label === input.value) input.checked = true;
      if (input.name === id + '-conf' && String(a.confidence) === input.value) input.checked = true;
      input.addEventListener('change', function () {
        var a = answers[id] || {};
        if (input.name === id + '-label') a.label = input.value;
        else a.confidence = parseInt(input.value, 10);
        answers[id] = a;
        card.classList.toggle('done', !!(a.label && a.confidence));
        save();
      });
    });
    var a = answers[id];
    card.classList.toggle('done', !!(a && a.label && a.confidence));
  });
  save();
  document.getElementById('export').addEventListener('click', function () {
    var observer = document.getElementById('observer').value.trim() || 'anonymous';
    var body = JSON.stringify({blind_id: meta.blind_id, observer: observer, answers: answers},
                              null, 1);
    var link = document.createElement('a');
    link.href = 'data:application/json;charset=utf-8,' + encodeURIComponent(body);
    link.download = 'answers-' + observer.replace(/[^A-Za-z0-9_-]+/g, '_') + '.json';
    document.body.appendChild(link); link.click(); link.remove();
  });
  document.getElementById('clear').addEventListener('click', function () {
    if (!window.confirm('Forget every answer on this page?')) return;
    localStorage.removeItem(store); window.location.reload();
  });
})();
"""

ASSETS = {"report.css": CSS, "table.js": TABLE_JS, "pager.js": PAGER_JS, "tsne.js": TSNE_JS,
          "blind.js": BLIND_JS}
