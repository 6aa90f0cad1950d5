/* The module atlas: search by name, filter by tag, and open a collapsed card a tag link points to. */
(function () {
  "use strict";
  var search = document.getElementById("atlas-search");
  var tag = document.getElementById("atlas-tag");
  var count = document.getElementById("atlas-count");
  var nodes = Array.prototype.slice.call(document.querySelectorAll(".atlas-node"));

  function own(node) {          /* the node matches by itself (not through a child) */
    var query = search ? search.value.trim().toLowerCase() : "";
    var wanted = tag ? tag.value : "";
    var name = (node.getAttribute("data-module") || "").toLowerCase();
    var tags = (node.getAttribute("data-tags") || "").split("|");
    return (!query || name.indexOf(query) !== -1) && (!wanted || tags.indexOf(wanted) !== -1);
  }

  function apply() {
    var filtering = (search && search.value.trim()) || (tag && tag.value);
    var shown = 0;
    nodes.slice().reverse().forEach(function (node) {   /* children first: a parent stays when a child matches */
      var child = node.querySelector(":scope > details > ul > .atlas-node:not(.hidden)");
      var match = own(node);
      var keep = !filtering || match || child !== null;
      node.classList.toggle("hidden", !keep);
      if (filtering && keep) { node.querySelector(":scope > details").open = true; }
      if (match && filtering) { shown += 1; }
    });
    if (count) { count.textContent = filtering ? shown + " of " + nodes.length + " modules" : nodes.length + " modules"; }
  }

  function reveal(id) {
    var target = document.getElementById(id);
    for (var el = target; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") { el.open = true; }
      if (el.classList && el.classList.contains("hidden")) { el.classList.remove("hidden"); }
    }
    if (target) { target.scrollIntoView(); }
  }

  if (search) { search.addEventListener("input", apply); }
  if (tag) { tag.addEventListener("change", apply); }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.tag") : null;
    if (link) { reveal(link.getAttribute("href").slice(1)); }
  });
  if (location.hash.indexOf("#card-") === 0) { reveal(location.hash.slice(1)); }
  apply();
})();
