// Lockbox portal: small enhancements only; every page works without this.
(function () {
  "use strict";
  function left(ms) {
    if (ms <= 0) return "none";
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.ceil(s % 3600 / 60);
    if (m === 60) { m = 0; h += 1; }
    if (d > 0) return d + " d " + h + " h";
    if (h > 0) return h + " h " + (m < 10 ? "0" : "") + m + " min";
    return m + " min";
  }
  // The server's clock decides; this only keeps the shown time left current.
  var skew = 0;
  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = left(at - now);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    // Align with the page's own rendering of the time left, so a browser
    // whose clock is off does not show a different countdown.
    var first = document.querySelector("time[data-countdown]");
    if (first) {
      var shown = first.textContent.trim(), at = Date.parse(first.getAttribute("datetime"));
      var m = /^(?:(\d+) d )?(?:(\d+) h ?)?(?:(\d+) min)?$/.exec(shown);
      if (m && !isNaN(at) && shown !== "none") {
        var ms = ((+(m[1] || 0)) * 86400 + (+(m[2] || 0)) * 3600 + (+(m[3] || 0)) * 60) * 1000;
        if (ms > 0) skew = at - ms - Date.now();
      }
    }
    setInterval(tick, 15000);
    // The inbox refreshes itself while visible and while no form is being filled in.
    var auto = document.querySelector("[data-autorefresh]");
    if (auto) {
      var every = Math.max(10, +auto.getAttribute("data-autorefresh")) * 1000;
      setInterval(function () {
        var a = document.activeElement;
        var typing = a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
        if (document.visibilityState === "visible" && !typing) location.reload();
      }, every);
    }
  });
})();
