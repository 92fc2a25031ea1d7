// The live escalation queue: every 30 seconds, and whenever staff come back to the tab, fetch the queue's rows
// and the count for the page title from the server, and swap them in without reloading the page.
// A plain file (no inline script) so the dashboard's Content-Security-Policy can forbid everything else.
(function () {
  "use strict";
  var region = document.getElementById("queue-live");
  if (!region || !window.fetch || !("content" in document.createElement("template"))) return;
  var every = Math.max(5, parseInt(region.getAttribute("data-every"), 10) || 30) * 1000;
  var timer = null;
  var busy = false;

  function swap(fresh) {
    // Keep the keyboard where it was: refocus the same link (by its href) in the new rows.
    var focused = document.activeElement;
    var href = focused && region.contains(focused) ? focused.getAttribute("href") : null;
    region.replaceWith(fresh);
    region = fresh;
    if (href) {
      var again = region.querySelector('a[href="' + href.replace(/"/g, "") + '"]');
      if (again) again.focus();
    }
  }

  function signedOut() {
    if (document.getElementById("queue-signed-out")) return;
    var note = document.createElement("p");
    note.id = "queue-signed-out";
    note.className = "banner";
    note.setAttribute("role", "alert");
    note.textContent = "You have been signed out: this list is no longer updated. Reload the page to sign in.";
    region.parentNode.insertBefore(note, region);
    document.title = "Signed out: " + document.title.replace(/^\([^)]*\) /, "");
  }

  function refresh() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    fetch(region.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) signedOut();
        if (!r.ok) throw new Error("queue " + r.status);
        return r.text();
      })
      .then(function (html) {
        var t = document.createElement("template");
        t.innerHTML = html.trim();
        var fresh = t.content.firstElementChild;
        if (!fresh || fresh.id !== "queue-live") return;
        document.title = fresh.getAttribute("data-title") || document.title;
        if (fresh.innerHTML !== region.innerHTML) swap(fresh);
        region.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function () { /* signed out or offline: keep the last view, try again later */ })
      .then(function () {
        busy = false;
        timer = setTimeout(refresh, every);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") refresh();
  });
  timer = setTimeout(refresh, every);
})();
