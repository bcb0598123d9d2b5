// Regulars console: small touches on top of pages that work without it.
// Countdowns tick down each half minute, so a case page left open stays true.
(function () {
  function words(ms) {
    var minutes = Math.max(0, Math.floor(Math.abs(ms) / 60000));
    var d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + (m < 10 ? "0" : "") + m + " min";
    return m + " min";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var left = Date.parse(el.getAttribute("data-due")) - now;
      var verb = el.getAttribute("data-verb");
      el.textContent = left > 0 ? verb + " within " + words(left) : verb + ": overdue by " + words(left);
    });
  }
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSettle", tick);
  setInterval(tick, 30000);
})();
