(function () {
  "use strict";
  function key(cell) {
    if (!cell) { return { num: true, x: NaN }; }
    var v = cell.getAttribute("data-v");
    if (v === null) { return { num: false, s: cell.textContent.trim().toLowerCase() }; }
    return { num: true, x: v === "" ? NaN : parseFloat(v) };
  }
  function compare(a, b) {
    if (a.num && b.num) {
      var an = isNaN(a.x), bn = isNaN(b.x);
      if (an || bn) { return an === bn ? 0 : (an ? 1 : -1); }
      return a.x < b.x ? -1 : (a.x > b.x ? 1 : 0);
    }
    var s = a.num ? String(a.x) : a.s, t = b.num ? String(b.x) : b.s;
    return s < t ? -1 : (s > t ? 1 : 0);
  }
  // "Show failing rows only": a class on the table that CSS uses to hide the passing rows.
  var filters = document.querySelectorAll("input[data-failed-only]");
  Array.prototype.forEach.call(filters, function (box) {
    box.addEventListener("change", function () {
      var table = document.getElementById(box.getAttribute("data-failed-only"));
      if (table) { table.classList.toggle("failed-only", box.checked); }
    });
  });
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var d = compare(key(r1.cells[col]), key(r2.cells[col]));
          return ascending ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
