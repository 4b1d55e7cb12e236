// redstream dashboard: updates the parts of a page marked data-live
// without a reload, every data-refresh seconds of <body>. It fetches the
// same page and swaps those elements; a page being worked on (a field
// focused, an entry selected) or hidden is left alone.
(function () {
  "use strict";
  var secs = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!secs) {
    return;
  }
  var status = document.getElementById("live-status");
  function busy() {
    var a = document.activeElement;
    if (a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) {
      return true;
    }
    return document.querySelector("input[type=checkbox]:checked") !== null;
  }
  function update() {
    if (document.hidden || busy()) {
      return;
    }
    fetch(location.href, { credentials: "same-origin", headers: { "X-Redstream-Live": "1" } })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) {
            el.replaceWith(document.importNode(fresh, true));
          }
        });
        if (status) {
          status.textContent = "updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function (e) {
        if (status) {
          status.textContent = "update failed: " + e.message;
        }
      });
  }
  setInterval(update, secs * 1000);
})();
