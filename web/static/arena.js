// Arena's pages: sortable tables, and live progress that refreshes the page's content
// (not the whole page) when jobs finish, so results appear without reloading.
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

async function refreshMain() {
  const response = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("main");
  const main = document.getElementById("main");
  if (fresh && main && !main.contains(document.activeElement)) {
    main.innerHTML = fresh.innerHTML;
    bindSorting(main);
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

document.addEventListener("DOMContentLoaded", () => {
  bindSorting(document);
  const bar = document.getElementById("progress");
  if (bar) pollProgress(bar, null);
});
