// autotag's buttons that call the JSON API: data-action="METHOD /path" on a button or a form,
// an optional data-body (JSON) or the form's fields, data-confirm, and data-then saying what
// the page does after: reload, remove (the closest row or card), remove-card, goto:/path.
// Multi-select on the search grid: tick cards, then "Delete selected".
(function () {
  async function call(method, path, body) {
    const r = await fetch(path, {
      method: method,
      headers: { "Content-Type": "application/json" },
      body: method === "GET" ? undefined : JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    if (!r.ok) {
      let why = r.status + "";
      try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
      throw new Error(why);
    }
    return r.json();
  }

  function after(el, then) {
    if (!then || then === "reload") { window.location.reload(); return; }
    if (then.startsWith("goto:")) { window.location.href = then.slice(5); return; }
    const gone = then === "remove-card" ? el.closest(".card") : el.closest("tr, .card, li");
    const grid = gone ? gone.parentElement : null;
    if (gone) gone.remove();
    // The last of a new tag's questions answered: the learner asks the next ones (or
    // publishes it) a moment later; show that.
    if (grid && grid.classList.contains("questions") && !grid.querySelector(".card")) {
      window.setTimeout(function () { window.location.reload(); }, 2500);
    }
  }

  function formBody(form) {
    const body = {};
    new FormData(form).forEach(function (value, key) {
      const field = form.elements[key];
      body[key] = field && field.hasAttribute && field.hasAttribute("data-int") ? parseInt(value, 10) : value;
    });
    return body;
  }

  async function act(el, body) {
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    const [method, path] = el.dataset.action.split(" ");
    try {
      await call(method, path, body);
      after(el, el.dataset.then);
    } catch (err) {
      window.alert(err.message);
    }
  }

  document.addEventListener("click", function (evt) {
    const el = evt.target.closest("button[data-action]");
    if (!el || el.form) return;
    evt.preventDefault();
    act(el, el.dataset.body ? JSON.parse(el.dataset.body) : {});
  });
  document.addEventListener("submit", function (evt) {
    const form = evt.target.closest("form[data-action]");
    if (!form) return;
    evt.preventDefault();
    act(form, formBody(form));
  });

  // Multi-select: the toolbar shows how many are ticked; delete sends each to the trash.
  function picked() { return [...document.querySelectorAll("#results input.pick:checked")]; }
  document.addEventListener("change", function (evt) {
    if (!evt.target.matches("input.pick")) return;
    const bar = document.getElementById("selection");
    if (!bar) return;
    const n = picked().length;
    bar.hidden = n === 0;
    bar.querySelector(".n").textContent = n;
  });
  document.addEventListener("click", async function (evt) {
    if (!evt.target.matches("#delete-selected")) return;
    const boxes = picked();
    if (!boxes.length || !window.confirm("Move " + boxes.length + " photo(s) to the trash?")) return;
    const failed = [];
    for (const box of boxes) {
      try {
        await call("DELETE", "/photos/" + box.value);
        box.closest(".cell").remove();
      } catch (err) {
        failed.push(err.message);
      }
    }
    const bar = document.getElementById("selection");
    bar.querySelector(".n").textContent = picked().length;
    bar.hidden = picked().length === 0;
    const count = document.getElementById("result-count");
    if (count) count.dataset.deleted = (parseInt(count.dataset.deleted || "0", 10) + boxes.length - failed.length) + "";
    if (failed.length) window.alert(failed.join("\n"));
  });
})();
