// The customer's payment page: copy buttons, the countdown, and the live
// state from `<token>/status`. The page is complete without this script.
(function () {
  "use strict";
  var main = document.querySelector("main[data-token]");
  if (!main) return;
  window.paywatchLoadedAt = window.paywatchLoadedAt || Date.now();
  var copiedText = main.getAttribute("data-copied") || "Copied";
  var payAmount = main.getAttribute("data-pay-amount") || "";

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

  var expiry = document.querySelector("[data-field=expiry]");
  var expiresAt = expiry ? Date.parse(expiry.getAttribute("data-expires")) : NaN;
  var expiresIn = main.getAttribute("data-expires-in") || "";
  var expiresAtText = expiry ? expiry.textContent : "";
  function tick() {
    if (!expiry || isNaN(expiresAt) || !payAmount) return;
    var left = Math.max(0, Math.floor((expiresAt - Date.now()) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    expiry.textContent = expiresIn + " " + (h > 0 ? h + ":" + pad(m) : m) + ":" + pad(s);
    if (left === 0 && !expiredAsked) { expiredAsked = true; poll(); }
  }
  var expiredAsked = false;

  function set(field, text) {
    document.querySelectorAll("[data-field=" + field + "]").forEach(function (el) { el.textContent = text; });
  }

  var statusUrl = location.pathname.replace(/\/$/, "") + "/status";
  var timer = null;
  var asking = false;
  function poll() {
    if (asking) return;
    asking = true;
    clearTimeout(timer);
    fetch(statusUrl, { cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      asking = false;
      if (!s) { timer = setTimeout(poll, 5000); return; }
      var nowPay = s.pay ? String(s.pay.amount) : "";
      if (nowPay && nowPay !== payAmount) {
        // Something new to send (the rest of an underpayment): a new QR code.
        location.reload();
        return;
      }
      if (!nowPay && payAmount) {
        // Nothing to send any more: the address and QR code go away, and
        // the countdown gives way to the time.
        payAmount = "";
        document.querySelectorAll(".pay").forEach(function (el) { el.hidden = true; });
        if (expiry) expiry.textContent = expiresAtText;
      }
      main.setAttribute("data-state", s.state);
      main.setAttribute("data-final", String(s.final));
      set("state-text", s.state_text);
      set("confirmations", s.confirmations_text);
      if (!s.final) timer = setTimeout(poll, (s.poll_seconds || 5) * 1000);
    }).catch(function () { asking = false; timer = setTimeout(poll, 5000); });
  }
  tick();
  setInterval(tick, 1000);
  if (main.getAttribute("data-final") !== "true") timer = setTimeout(poll, (Number(main.getAttribute("data-poll")) || 5) * 1000);
})();
