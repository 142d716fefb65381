// autotag's page glue: JSON for htmx requests, and no token left in the address bar.
(function () {
  // The first visit carries ?token=...; the server has set the cookie by now, so drop the
  // token from the address bar and history (it must not end up in bookmarks or screenshots).
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  // The server takes only JSON (or image bytes) in state-changing requests: send htmx's
  // parameters as a JSON object (hx-vals keep their JSON types).
  document.addEventListener("DOMContentLoaded", function () {
    htmx.defineExtension("json", {
      onEvent: function (name, evt) {
        if (name === "htmx:configRequest" && evt.detail.verb !== "get") {
          evt.detail.headers["Content-Type"] = "application/json";
        }
      },
      encodeParameters: function (xhr, parameters, elt) {
        xhr.overrideMimeType("text/html");
        const body = {};
        parameters.forEach(function (value, key) { body[key] = value; });
        const vals = elt.closest("[hx-vals]");
        if (vals) Object.assign(body, JSON.parse(vals.getAttribute("hx-vals")));
        return JSON.stringify(body);
      },
    });
  });
})();
