// The Upload page: drag and drop, one request per file with its own progress bar, and the
// live feed of results (server-sent events from /live, fed by Postgres NOTIFY).
(function () {
  const drop = document.getElementById("drop");
  const input = document.getElementById("files");
  const table = document.getElementById("uploads");
  const feed = document.getElementById("feed");
  const feedState = document.getElementById("feed-state");
  const maxBytes = Number(table.dataset.maxBytes);
  const maxVideoBytes = Number(table.dataset.maxVideoBytes);
  // Names that say "video" when the browser gives no type (the server judges the bytes).
  const videoNames = /\.(avi|mp4|m4v|mov|mkv|webm|mpe?g|m2?ts|flv|ogv|wmv|asf|3gp)$/i;
  const rows = new Map(); // photo_id -> upload row
  const waiting = [];
  let running = 0;

  function cell(tr, text, cls) {
    const td = tr.insertCell();
    if (text !== undefined) td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function add(files) {
    for (const file of files) {
      const tr = table.insertRow();
      tr.className = "upload-row";
      cell(tr, file.name, "name");
      const bar = document.createElement("progress");
      bar.max = 100; bar.value = 0;
      cell(tr).appendChild(bar);
      const state = cell(tr, "waiting", "state");
      waiting.push({ file, bar, state, tr });
    }
    pump();
  }

  function pump() {
    while (running < 3 && waiting.length) {
      running += 1;
      send(waiting.shift()).finally(function () { running -= 1; pump(); });
    }
  }

  function send(item) {
    const { file, bar, state, tr } = item;
    const video = file.type.startsWith("video/") || (!file.type && videoNames.test(file.name));
    if (!video && !file.type.startsWith("image/")) {
      state.textContent = "not sent: not an image or a video (" + (file.type || "unknown type") + ")";
      tr.classList.add("refused");
      return Promise.resolve();
    }
    const limit = video ? maxVideoBytes : maxBytes;
    if (file.size > limit) {
      state.textContent = "not sent: larger than the " + limit + "-byte limit";
      tr.classList.add("refused");
      return Promise.resolve();
    }
    return new Promise(function (resolve) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", (video ? "/videos" : "/photos") + "?name=" + encodeURIComponent(file.name));
      xhr.setRequestHeader("Content-Type", file.type || "video/octet-stream");
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total;
      };
      xhr.onload = function () {
        let out = {};
        try { out = JSON.parse(xhr.responseText); } catch (err) { out = { error: xhr.statusText }; }
        bar.value = 100;
        if (out.photo_id) {
          tr.dataset.photo = out.photo_id;
          rows.set(out.photo_id, tr);
          state.textContent = out.status === "queued" ? "queued, tagging…" : out.status;
        } else if (out.video_id && xhr.status < 300) {
          tr.dataset.video = out.video_id;
          const link = document.createElement("a");
          link.href = "/videos/" + out.video_id;
          link.textContent = out.status === "queued"
            ? "video queued: " + out.segments + " segment" + (out.segments === 1 ? "" : "s")
            : "video " + out.status;
          state.textContent = "";
          state.appendChild(link);
        } else {
          state.textContent = "refused: " + (out.error || xhr.status);
          tr.classList.add("refused");
        }
        resolve();
      };
      xhr.onerror = function () { state.textContent = "network error"; resolve(); };
      xhr.send(file);
    });
  }

  function showResult(p) {
    const item = document.createElement("a");
    item.className = "item";
    item.href = "/photo/" + p.photo_id;
    item.dataset.photo = p.photo_id;
    const img = document.createElement("img");
    img.src = "/photos/" + p.photo_id + "/thumbnail";
    img.alt = p.source || p.photo_id.slice(0, 12);
    item.appendChild(img);
    const text = document.createElement("div");
    const name = document.createElement("b");
    name.textContent = p.source || p.photo_id.slice(0, 12);
    text.appendChild(name);
    const what = document.createElement("div");
    if (p.status === "failed") {
      what.className = "failed";
      what.textContent = "failed: " + (p.reason || "unknown reason");
    } else {
      what.className = "tags";
      what.textContent = p.tags.map(function (t) { return t.tag + " " + t.score.toFixed(2); }).join(", ") || "no tag above threshold";
    }
    text.appendChild(what);
    item.appendChild(text);
    feed.prepend(item);
    const row = rows.get(p.photo_id);
    if (row) row.querySelector(".state").textContent = p.status === "failed" ? "failed" : "tagged";
  }

  drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("over");
    add(e.dataTransfer.files);
  });
  input.addEventListener("change", function () { add(input.files); input.value = ""; });

  const events = new EventSource("/live");
  events.onopen = function () { feedState.textContent = "connected"; };
  events.onerror = function () { feedState.textContent = "reconnecting…"; };
  events.addEventListener("photo", function (e) { showResult(JSON.parse(e.data)); });
})();
