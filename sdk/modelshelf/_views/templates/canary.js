// Live canary view: poll the aliases with a conditional GET; reload the panel when they
// moved (a 200) or every data-refresh-ms for new metrics. A 304 costs a few bytes.
(function () {
  "use strict";
  var box = document.getElementById("canary");
  if (!box) { return; }
  var model = box.dataset.model;
  var pollMs = parseInt(box.dataset.pollMs, 10) || 5000;
  var refreshMs = parseInt(box.dataset.refreshMs, 10) || 60000;
  var status = document.getElementById("poll-status");
  var etag = null;
  var lastPanel = Date.now();

  function reloadPanel() {
    return fetch("/models/" + encodeURIComponent(model) + "/canary/panel", {cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (html) {
        // The panel comes from this app's own template, escaped by it.
        box.innerHTML = html;
        lastPanel = Date.now();
      });
  }

  function poll() {
    var headers = etag ? {"If-None-Match": etag} : {};
    fetch("/api/models/" + encodeURIComponent(model) + "/aliases", {headers: headers, cache: "no-store"})
      .then(function (r) {
        if (r.status === 304) {
          return Date.now() - lastPanel >= refreshMs ? reloadPanel() : null;
        }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        var first = etag === null;
        etag = r.headers.get("ETag");
        return first && Date.now() - lastPanel < refreshMs ? null : reloadPanel();
      })
      .then(function () { status.textContent = "aliases checked " + new Date().toISOString().slice(11, 19) + " UTC"; })
      .catch(function (e) { status.textContent = "could not reach the app: " + e.message; })
      .then(function () { window.setTimeout(poll, pollMs); });
  }
  poll();
}());
