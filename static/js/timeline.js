/*
 * The timeline's order: items sit in server time order (`created`); an item with
 * no time yet (a streaming answer) goes last and is moved once its final message
 * lands.
 */

export function createTimeline({ list, empty }) {
  function place(node, createdMs) {
    const key = createdMs === null ? lastSortKey() : createdMs;
    node.dataset.sort = String(key);
    let after = list.lastElementChild;
    while (after && after !== node && Number(after.dataset.sort) > key) {
      after = after.previousElementSibling;
    }
    if (after === node) return;
    if (after) after.after(node);
    else list.prepend(node);
    empty.hidden = true;
  }

  function lastSortKey() {
    const last = list.lastElementChild;
    return last ? Number(last.dataset.sort) : 0;
  }

  function refreshEmpty() {
    empty.hidden = list.children.length > 0;
  }

  return { list, place, refreshEmpty };
}
