'use strict';
// The Node side of publish_cost.py: agent.status() of the ringside npm package (koffi), and
// JSON.stringify of the same event for scale.  Usage: node publish_cost.js SHM_DIR COUNT REPEAT.
// Prints {"lang":"node","ns_per_event":[...],"json_ns":[...]}.
const path = require('node:path');
const { Agent } = require(path.join(__dirname, '..', '..', '..', 'client-sdk', 'node'));

const [shm, count, repeat] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const out = { lang: 'node', ns_per_event: [], json_ns: [] };
for (let r = 0; r < repeat; r++) {
  const a = new Agent({ agentId: 'bench-node', projectId: 'bench', shmDir: shm, strict: true,
    terminal: false, logSlots: 65536 });
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) a.status(i & 1 ? 'working' : 'idle', 'step detail');
  out.ns_per_event.push(Number(process.hrtime.bigint() - t0) / count);
  a.close();
  let sink = 0;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    sink += JSON.stringify({ type: 'agent_status', agent_id: 'bench-node', project_id: 'bench',
      status: i & 1 ? 'working' : 'idle', detail: 'step detail' }).length;
  }
  out.json_ns.push(Number(process.hrtime.bigint() - t0) / count);
  if (sink === 0) throw new Error('unreachable');
}
console.log(JSON.stringify(out));
