// The customer's payment page: copy buttons, the countdown, and the live
// state from `<token>/status`. The page is complete without this script.
(function () {
  "use strict";
  var main = document.querySelector("main");
  if (!main) return;
  window.paywatchLoadedAt = window.paywatchLoadedAt || Date.now();
  var copiedText = main.getAttribute("data-copied") || "Copied";

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var label = button.textContent;
      navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
        button.textContent = copiedText;
        setTimeout(function () { button.textContent = label; }, 1500);
      });
    });
  });

  var countdown = document.querySelector("[data-field=countdown]");
  function tick() {
    if (!countdown) return;
    var left = Math.max(0, Math.floor((Date.parse(countdown.getAttribute("data-expires")) - Date.now()) / 1000));
    var m = Math.floor(left / 60), s = left % 60;
    countdown.textContent = m + ":" + (s < 10 ? "0" : "") + s;
  }
  tick();
  var ticking = setInterval(tick, 1000);

  function set(field, text) {
    document.querySelectorAll("[data-field=" + field + "]").forEach(function (el) { el.textContent = text; });
  }

  var statusUrl = location.pathname.replace(/\/$/, "") + "/status";
  function poll() {
    fetch(statusUrl, { cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      if (!s) return;
      main.setAttribute("data-state", s.state);
      main.setAttribute("data-final", String(s.final));
      set("state-text", s.state_text);
      set("confirmations", s.confirmations_text);
      set("received", s.received);
      if (s.final) { clearInterval(ticking); clearInterval(polling); }
    }).catch(function () {});
  }
  var polling = setInterval(poll, 5000);
  poll();
})();
