// DOM helpers shared by the console's modules. Text goes in with textContent only: every value
// shown comes from the network and is never parsed as HTML.

export function $(id) { return document.getElementById(id); }

// Keep one row per key in `tbody`, in the order of `items`, and let `renderRow` update it in
// place. Rows are not rebuilt on every poll, so a button under the pointer (or one a WebDriver
// test has found) is still the same element after the next refresh.
export function syncRows(tbody, items, keyOf, renderRow) {
  const stale = new Map(Array.from(tbody.rows, (row) => [row.dataset.key, row]));
  items.forEach((item, position) => {
    const key = keyOf(item);
    let row = stale.get(key);
    stale.delete(key);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.key = key;
    }
    if (tbody.rows[position] !== row) tbody.insertBefore(row, tbody.rows[position] || null);
    renderRow(row, item);
  });
  for (const row of stale.values()) row.remove();
}

// Fill `row`'s cells from `values`: a text (null shows as a dash), {text, className, colSpan},
// or a function that fills its cell itself. `shape` names the layout: when it changes (a member
// becomes unreachable and its row spans other columns), the row's cells are made anew.
export function setCells(row, shape, values) {
  if (row.dataset.shape !== shape) {
    row.replaceChildren();
    row.dataset.shape = shape;
  }
  values.forEach((value, index) => {
    const td = row.cells[index] || row.insertCell();
    if (typeof value === "function") {
      value(td);
      return;
    }
    const {text, className = "", colSpan = 1} = value !== null && typeof value === "object" ? value : {text: value};
    const shown = text === null || text === undefined ? "–" : String(text);
    if (td.textContent !== shown) td.textContent = shown;
    td.className = className;
    td.colSpan = colSpan;
  });
}
