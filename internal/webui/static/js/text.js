// Text helpers that never parse HTML.

const entities = { lt: "<", gt: ">", amp: "&", quot: '"', "#34": '"', "#39": "'" };

// unescapeHTML undoes Go's html.EscapeString (the five entities only).
export function unescapeHTML(s) {
  return s.replace(/&(lt|gt|amp|quot|#34|#39);/g, (_, e) => entities[e]);
}

// highlight turns a search snippet (`hl`: HTML-escaped text with each
// match in <mark>…</mark>, PROTOCOL §15) into text nodes and <mark>
// elements. Anything else that looks like markup stays text.
export function highlight(hl) {
  const out = [];
  let marked = false;
  for (const part of String(hl).split(/(<mark>|<\/mark>)/)) {
    if (part === "<mark>") { marked = true; continue; }
    if (part === "</mark>") { marked = false; continue; }
    if (!part) continue;
    const text = unescapeHTML(part);
    if (marked) {
      const m = document.createElement("mark");
      m.textContent = text;
      out.push(m);
    } else {
      out.push(document.createTextNode(text));
    }
  }
  return out;
}
