// The overview table: filter by status, decision, change and criterion result, search by name or
// id, sort by any column. Plain DOM, no library, no network; inlined in report.html and served
// by the review app. Reads only data-* attributes and text the server escaped; writes only
// `hidden`, aria-sort and textContent, never HTML.
(function () {
  "use strict";
  var table = document.querySelector("table.overview");
  if (!table) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var form = document.getElementById("filters");
  var shown = document.getElementById("shown");

  function value(name) {
    var el = form ? form.elements[name] : null;
    return el ? el.value : "";
  }

  function apply() {
    var status = value("status"), decision = value("decision"), change = value("change");
    var criterion = value("criterion"), result = value("result");
    var q = value("q").trim().toLowerCase();
    var index = criterion === "" ? -1 : parseInt(criterion, 10);
    var n = 0;
    rows.forEach(function (tr) {
      var d = tr.dataset;
      var ok = (!status || d.status === status) &&
        (!decision || (decision === "none" ? !d.decision : d.decision === decision)) &&
        (!change || d.change === change) &&
        (index < 0 || !result || d.results.charAt(index) === result) &&
        (!q || d.search.indexOf(q) >= 0);
      tr.hidden = !ok;
      if (ok) n += 1;
    });
    if (shown) shown.textContent = n + " of " + rows.length + " shown";
  }

  function sortBy(th) {
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.dataset.sort === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    function key(tr) {
      var cell = tr.cells[col];
      var k = cell.dataset.key !== undefined ? cell.dataset.key : cell.textContent.trim();
      if (!numeric) return k.toLowerCase();
      var f = parseFloat(k);
      return isNaN(f) ? null : f;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === y) return 0;
      if (x === null) return 1;  // empty values last, whichever the direction
      if (y === null) return -1;
      return (x < y ? -1 : 1) * dir;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (tr) { frag.appendChild(tr); });
    body.appendChild(frag);
  }

  if (form) {
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });
  }
  Array.prototype.forEach.call(table.querySelectorAll("th[data-sort]"), function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(th); });
  });
  // In the report, a patient's name opens its detail below the overview.
  body.addEventListener("click", function (e) {
    var a = e.target.closest("a[data-open]");
    if (!a) return;
    var detail = document.getElementById(a.dataset.open);
    if (detail && detail.tagName === "DETAILS") {
      detail.open = true;
    }
  });
  function openFromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    var detail = id ? document.getElementById(id) : null;
    if (detail && detail.tagName === "DETAILS") detail.open = true;
  }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
  apply();
})();
