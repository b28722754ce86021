// Parses a Mermaid diagram (the file named by the first argument) with mermaid's own
// parser and prints {"ok": true, "type": ...} or {"ok": false, "error": ...}.
// Mermaid sanitizes labels with DOMPurify, which needs a DOM: jsdom provides one.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;

const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

const text = readFileSync(process.argv[2], "utf8");
try {
  const parsed = await mermaid.parse(text);
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db;
  const vertices = db.getVertices ? [...db.getVertices().keys()] : [];
  const edges = db.getEdges ? db.getEdges().map((e) => [e.start, e.end, e.text]) : [];
  const subgraphs = db.getSubGraphs ? db.getSubGraphs().map((s) => [s.id, s.title, s.nodes]) : [];
  console.log(JSON.stringify({ ok: true, type: parsed.diagramType, vertices, edges, subgraphs }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: String(error.message || error) }));
}
