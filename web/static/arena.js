// Arena's pages: sortable tables, the heatmap's cells, live progress that refreshes the
// page's content (not the whole page) when jobs finish, so results appear without reloading,
// and forms that say they are busy while their answer comes (the upload).
"use strict";

function sortTable(header) {
  const table = header.closest("table");
  const column = [...header.parentNode.children].indexOf(header);
  const numeric = header.dataset.type === "number";
  const ascending = !header.classList.contains("asc");
  table.querySelectorAll("th").forEach((th) => {
    th.classList.remove("asc", "desc");
    th.removeAttribute("aria-sort");
  });
  header.classList.add(ascending ? "asc" : "desc");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const key = (row) => {
    const cell = row.children[column];
    if (!cell) return numeric ? -Infinity : "";
    const raw = cell.dataset.value ?? cell.textContent.trim();
    return numeric ? parseFloat(raw) || 0 : raw.toLowerCase();
  };
  const rows = [...body.rows].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
  });
  rows.forEach((row) => body.appendChild(row));
}

// Each sortable header's text goes into a button (the sortable-table pattern of WAI-ARIA):
// Tab reaches it, Enter or Space sorts, and the header's aria-sort says the order.
function bindSorting(root) {
  root.querySelectorAll("table.sortable th").forEach((th) => {
    if (!th.textContent.trim() || th.querySelector("button.sort")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    // The "?" link to the column's explanation stays beside the button: a link inside a button is neither.
    const explain = th.querySelector("a.explain");
    button.append(...[...th.childNodes].filter((node) => node !== explain));
    th.appendChild(button);
    if (explain) th.appendChild(explain);
    button.addEventListener("click", () => sortTable(th));
  });
}

// Fills a template's {name}s with value(name); a [part] is kept only when each {name} in it
// has a value (not null or undefined), so a cell without answers has no rate in its title.
function fillTemplate(template, value) {
  const complete = (part) => [...part.matchAll(/\{(\w+)\}/g)].every(([, name]) => value(name) != null);
  return template
    .replace(/\[([^\]]*)\]/g, (_, part) => (complete(part) ? part : ""))
    .replace(/\{(\w+)\}/g, (_, name) => String(value(name) ?? ""));
}

// A cell's text and shade (0 to 1), or null where it has no answers: its rate (counts of
// answered), or in the query track's AVC view (data.l2) its median L2 distance, shaded as
// charts.l2_shade: 1 at 0, `lightest` at data.scale (the largest finite one), blank at ∞ (null).
function cellFigure(data, i, j, lightest) {
  const answered = data.answered[i][j];
  if (!answered) return null;
  if (data.l2) {
    const l2 = data.l2[i][j];
    if (l2 === null) return { text: "∞", shade: 0 };
    return { text: l2.toFixed(1), shade: 1 - (1 - lightest) * (data.scale ? l2 / data.scale : 0) };
  }
  return { text: ((100 * data.counts[i][j]) / answered).toFixed(0), shade: data.counts[i][j] / answered };
}

// The heatmap's cells, from the matrix JSON the page carries (the view /api/matrix serves):
// one cell per attack row and defense column, coloured by its figure (cellFigure), titled from the
// table's data-title with the cell's data, a link to its per-image results for organizers.
function drawHeatmap(root) {
  const table = root.querySelector("table#heatmap");
  const source = table && root.querySelector(`#${table.dataset.cells}`);
  if (!source || table.querySelector("td[data-attack]")) return;
  const data = JSON.parse(source.textContent);
  const defenseIds = [...table.tHead.querySelectorAll("th.col")].map((th) => th.dataset.id);
  const results = table.dataset.results;
  table.tBodies[0].querySelectorAll("tr[data-id]").forEach((row, i) => {
    const cells = document.createDocumentFragment();
    data.defenses.forEach((defense, j) => {
      const count = data.counts[i][j];
      const answered = data.answered[i][j];
      const rate = answered ? (100 * count) / answered : null;
      const figure = cellFigure(data, i, j, Number(table.dataset.lightest));
      const value = (name) => {
        if (name === "attack") return data.attacks[i];
        if (name === "defense") return defense;
        if (name === "rate") return rate === null ? null : rate.toFixed(1);
        if (name === "shown") return figure && figure.text;
        if (name.startsWith("l2_") && name.endsWith("_text")) {  // an AVC interval's bound, ∞ where null
          const bound = value(name.slice(0, -5));
          return figure === null ? null : bound === null ? "∞" : bound.toFixed(1);
        }
        if (name.endsWith("_pct")) {  // a per-cell share (0 to 1) as a percentage: low_pct, high_pct
          const share = value(name.slice(0, -4));
          return share == null ? null : (100 * share).toFixed(1);
        }
        const field = data[name];
        return Array.isArray(field) && Array.isArray(field[i]) ? field[i][j] : field;
      };
      const cell = document.createElement("td");
      cell.style.background = figure ? `rgba(${table.dataset.colour},${figure.shade.toFixed(3)})` : table.dataset.empty;
      cell.title = fillTemplate(table.dataset.title, value);
      cell.dataset.attack = data.attacks[i];
      cell.dataset.defense = defense;
      const text = figure ? figure.text : "";
      if (results) {
        const link = document.createElement("a");
        link.href = `${results}&attack_id=${row.dataset.id}&defense_id=${defenseIds[j]}`;
        link.textContent = text;
        cell.appendChild(link);
      } else {
        cell.textContent = text;
      }
      cells.appendChild(cell);
    });
    row.appendChild(cells);
  });
}

// The round's time left, from the deadline the page carries, counted again every second: standings
// pages are cached for as long as the results do not change, and a page left open must not say
// "1 min left" after the close. Seconds show in the last hour.
function timeLeft(seconds) {
  if (!(seconds > 0)) return "(closed now)";
  const days = Math.floor(seconds / 86400), hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (seconds < 3600) return `(${minutes} min ${Math.floor(seconds % 60)} s left)`;
  return `(${days} d ${hours} h ${minutes} min left)`;
}

function showCountdowns(root) {
  root.querySelectorAll("time.countdown").forEach((time) => {
    time.textContent = timeLeft((Date.parse(time.dateTime) - Date.now()) / 1000);
  });
}

async function refreshMain() {
  const response = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("main");
  const main = document.getElementById("main");
  if (fresh && main && !main.contains(document.activeElement)) {
    main.innerHTML = fresh.innerHTML;
    bindSorting(main);
    showCountdowns(main);
    drawHeatmap(main);
  }
}

async function pollProgress(bar, lastSeen) {
  try {
    const response = await fetch(`/api/progress?dataset=${encodeURIComponent(bar.dataset.dataset)}`);
    if (response.ok) {
      const p = await response.json();
      const done = p.attack_jobs.done + p.defense_jobs.done;
      const expected = p.attack_jobs.expected + p.defense_jobs.expected;
      bar.querySelector("progress").value = expected ? done / expected : 1;
      const running = p.attack_jobs.running + p.defense_jobs.running;
      bar.querySelector(".text").textContent =
        `${done} of ${expected} jobs done` + (running ? `, ${running} running` : "") + (p.run.running ? ` — ${p.run.message}` : "");
      bar.dataset.done = String(done);
      bar.dataset.running = String(p.run.running || running > 0);
      const seen = `${done}|${p.run.running}`;
      if (lastSeen !== null && seen !== lastSeen && document.getElementById("main").hasAttribute("data-live")) {
        await refreshMain();
      }
      lastSeen = seen;
    }
  } finally {
    setTimeout(() => pollProgress(bar, lastSeen), 2000);
  }
}

// A button that copies the text of the element its data-copy names (the token shown once).
function bindCopying(root) {
  root.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(document.getElementById(button.dataset.copy).textContent.trim());
      const note = document.getElementById("copied");
      if (note) note.hidden = false;
    });
  });
}

// A form whose answer takes a while (an upload is sent, unpacked and checked before its answer
// comes): once it is sent, its buttons are disabled and say form.dataset.busy, and its status line
// counts the seconds, so the page does not sit still and a second click sends nothing twice.
// The form still posts as a plain form (without script it works the same, minus the feedback).
// A page the browser brings back (the back button, its back-forward cache) is usable again.
function bindBusyForms(root) {
  root.querySelectorAll("form[data-busy]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sending) {
        event.preventDefault();
        return;
      }
      form.dataset.sending = "true";
      const started = Date.now();
      const status = form.querySelector("[role=status]");
      const say = () => {
        if (status) status.textContent = `${form.dataset.busy} ${Math.floor((Date.now() - started) / 1000)} s`;
      };
      form.querySelectorAll("button").forEach((button) => {
        if (button.dataset.idle === undefined) button.dataset.idle = button.textContent;
        button.textContent = form.dataset.busy;
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
      });
      if (status) status.hidden = false;
      say();
      form.dataset.ticker = String(setInterval(say, 1000));
    });
  });
}

function resetBusyForms(root) {
  root.querySelectorAll("form[data-busy]").forEach((form) => {
    clearInterval(Number(form.dataset.ticker));
    delete form.dataset.sending;
    delete form.dataset.ticker;
    form.querySelectorAll("button").forEach((button) => {
      if (button.dataset.idle !== undefined) button.textContent = button.dataset.idle;
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
    const status = form.querySelector("[role=status]");
    if (status) {
      status.hidden = true;
      status.textContent = "";
    }
  });
}

window.addEventListener("pageshow", () => resetBusyForms(document));

document.addEventListener("DOMContentLoaded", () => {
  bindSorting(document);
  bindCopying(document);
  bindBusyForms(document);
  showCountdowns(document);
  setInterval(() => showCountdowns(document), 1000);
  drawHeatmap(document);
  const bar = document.getElementById("progress");
  if (bar) pollProgress(bar, null);
});
