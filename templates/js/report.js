/* auditor report: sortable tables and the module filter. Plain DOM, no dependencies, nothing fetched. */
(function () {
  "use strict";

  function numberOf(cell) {
    var raw = cell ? cell.getAttribute("data-sort") : null;
    if (raw === null || raw === "") { return null; }
    var value = Number(raw);
    return isNaN(value) ? null : value;
  }

  function textOf(cell) {
    return cell ? cell.textContent.trim() : "";
  }

  function compareRows(a, b, index, numeric, direction) {
    if (numeric) {
      var x = numberOf(a.row.cells[index]);
      var y = numberOf(b.row.cells[index]);
      if (x === null || y === null) {           /* blanks last, whichever the direction */
        return x === y ? a.position - b.position : (x === null ? 1 : -1);
      }
      return x === y ? a.position - b.position : (x < y ? -direction : direction);
    }
    var s = textOf(a.row.cells[index]);
    var t = textOf(b.row.cells[index]);
    if (s === "" || t === "") {
      return s === t ? a.position - b.position : (s === "" ? 1 : -1);
    }
    var order = s.localeCompare(t, undefined, { numeric: true, sensitivity: "base" });
    return order === 0 ? a.position - b.position : order * direction;
  }

  function sortBy(table, header) {
    var headers = table.tHead.rows[0].cells;
    var index = Array.prototype.indexOf.call(headers, header);
    var numeric = header.getAttribute("data-type") === "num";
    var current = header.getAttribute("aria-sort");
    /* first click: numbers largest first, text A to Z; a second click reverses */
    var first = numeric ? "descending" : "ascending";
    var next = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
    var direction = next === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, position) {
      return { row: row, position: position };
    });
    rows.sort(function (a, b) { return compareRows(a, b, index, numeric, direction); });
    rows.forEach(function (item) { body.appendChild(item.row); });
    Array.prototype.forEach.call(headers, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", next);
  }

  function makeSortable(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header) {
      header.classList.add("sort-header");
      header.addEventListener("click", function () { sortBy(table, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, header);
        }
      });
    });
  }

  function setUpModuleFilter() {
    var table = document.getElementById("module-table");
    var input = document.getElementById("module-filter");
    var select = document.getElementById("module-type");
    var count = document.getElementById("module-count");
    if (!table || !input || !select || !count) { return; }
    var rows = table.tBodies[0].rows;

    function apply() {
      var needle = input.value.trim().toLowerCase();
      var type = select.value;
      var shown = 0;
      var modules = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var name = textOf(row.cells[0]).toLowerCase();
        var rowType = textOf(row.cells[1]);
        var visible = (needle === "" || name.indexOf(needle) !== -1 || rowType.toLowerCase().indexOf(needle) !== -1)
          && (type === "" || rowType === type);
        row.hidden = !visible;
        var call = row.hasAttribute("data-call");  /* one call of a reused module: not a module of its own */
        if (!call) { modules += 1; }
        if (visible && !call) { shown += 1; }
      });
      count.textContent = "showing " + shown + " of " + modules + " modules";
    }

    input.addEventListener("input", apply);
    select.addEventListener("change", apply);
    apply();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  setUpModuleFilter();
})();
