// Loads a trace-event JSON file with two third-party parsers and prints, as
// JSON, what each makes of it:
// - devtools: Chrome DevTools' trace engine: each thread with its slices, and
//   each flow arrow as the events it is bound to;
// - tracerbench: TracerBench's trace model: each thread with its complete slices.
// Usage: node parse_trace.mjs FILE
import fs from 'node:fs';
import * as Trace from '@paulirish/trace_engine/models/trace/trace.js';
import tracerbench from '@tracerbench/trace-model';

const events = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).traceEvents;

async function devtools() {
  const model = Trace.TraceModel.Model.createWithAllHandlers();
  await model.parse(structuredClone(events));
  const data = model.parsedTrace().data;
  const threads = [];
  for (const [pid, proc] of data.Renderer.processes) {
    for (const [tid, thread] of proc.threads) {
      const slices = thread.entries.map(
        e => ({name: e.name, cat: e.cat, ts: e.ts, dur: e.dur ?? 0}));
      threads.push({pid, tid, name: thread.name, slices});
    }
  }
  const flows = data.Flows.flows.map(
    flow => flow.map(e => ({ph: e.ph, name: e.name, cat: e.cat, tid: e.tid, ts: e.ts})));
  return {threads, flows};
}

function tracerBench() {
  const model = tracerbench.buildModel(structuredClone(events));
  const threads = [];
  for (const proc of model.processes) {
    for (const thread of proc.threads) {
      const slices = thread.events.filter(e => e.isComplete()).map(
        e => ({name: e.name, cat: [].concat(e.cat).join(','), ts: e.start, dur: e.duration}));
      threads.push({pid: proc.id, tid: thread.id, name: thread.name, slices});
    }
  }
  return {threads};
}

process.stdout.write(JSON.stringify({devtools: await devtools(), tracerbench: tracerBench()}));
