// Live refresh: every element with data-live="URL" is replaced by what URL answers, every 2 s.
// Not while the keyboard focus is inside it (a user tabbing through its buttons keeps their
// place) nor while the tab is hidden. Without JS the pages work; they just do not refresh.
(function () {
  "use strict";
  function refresh(region) {
    var url = region.getAttribute("data-live");
    if (!url || document.hidden || region.contains(document.activeElement)) return;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (html) {
        if (region.contains(document.activeElement)) return;
        region.innerHTML = html;
        var state = region.querySelector("[data-state]");
        // A finished job's page stops refreshing itself.
        if (region.getAttribute("data-live").indexOf("/partials/jobs/") === 0 && state &&
            ["done", "failed", "cancelled"].indexOf(state.getAttribute("data-state")) >= 0) {
          region.removeAttribute("data-live");
        }
      })
      .catch(function () { /* the next round tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-live]");
    if (!regions.length) return;
    setInterval(function () { regions.forEach(refresh); }, 2000);
  });
})();
