#!/usr/bin/env node
// agent.js — an example agent in Node.js using the `ringside` npm package (client-sdk/node).
//
// Each cycle: status "working", a training task with progress and coloured output, then a wrapped
// child process (its stdout/stderr streamed to the dashboard), then status "idle".
//
//   npm install --install-links /path/to/client-sdk/node   # in your project (koffi from the npm registry)
//   node examples/node/agent.js --shm-dir /tmp/rs --loop 0
//
// Usage: agent.js [--agent A] [--project P] [--owner U] [--shm-dir D] [--loop N] [--delay-ms MS]
// Without a sidecar (no ring directory) the agent still runs: one warning, nothing published.
'use strict';
const { parseArgs } = require('node:util');
const { setTimeout: sleep } = require('node:timers/promises');
let ringside;
try {
  ringside = require('ringside');
} catch {
  ringside = require('../../client-sdk/node'); // run from a Ringside checkout
}

const STEPS = ['load dataset', 'tokenize', 'train epoch 1', 'train epoch 2', 'evaluate', 'save model'];
const stop = new AbortController();

async function cycle(agent, n, delayMs) {
  agent.status('working', `training run ${n}`);
  // withTask ends the task when the function settles: completed, or failed when it throws.
  await agent.withTask(`${agent.agentId.slice(0, 40)}-${n}`, `Training run #${n}`, async (task) => {
    for (const [i, what] of STEPS.entries()) {
      if (stop.signal.aborted) {
        task.write('\x1b[33minterrupted\x1b[0m\r\n', 'stderr');
        task.end('cancelled', 130);
        return;
      }
      task.progress(i + 1, STEPS.length, what);
      task.write(`\x1b[35m[${i + 1}/${STEPS.length}]\x1b[0m ${what}\r\n`);
      await sleep(delayMs, undefined, { signal: stop.signal }).catch(() => {});
    }
    task.write('\x1b[1;32maccuracy 0.93\x1b[0m\r\n');
  });
  if (stop.signal.aborted) return; // stopped by a signal: no report
  // A command run as its own task: output streamed as it comes, outcome from its exit status
  // (a signal while it runs stops its process group: the task ends cancelled).
  await agent.run(`${agent.agentId.slice(0, 40)}-${n}-report`, process.execPath,
    ['-e', 'console.log("\\x1b[36mreport:\\x1b[0m 6 steps, accuracy 0.93")'],
    { title: 'write report', signal: stop.signal });
  agent.status('idle', `run ${n} finished`);
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      agent: { type: 'string', default: 'node-agent' },
      project: { type: 'string', default: 'demo' },
      owner: { type: 'string' },
      'shm-dir': { type: 'string' },
      loop: { type: 'string', default: '1' },
      'delay-ms': { type: 'string', default: '300' },
    },
  });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => stop.abort());
  const agent = new ringside.Agent({ agentId: a.agent, projectId: a.project, owner: a.owner,
    shmDir: a['shm-dir'] });
  try {
    const loops = Number(a.loop);
    for (let n = 1; !stop.signal.aborted && (loops === 0 || n <= loops); n++) {
      await cycle(agent, n, Number(a['delay-ms']));
    }
    if (stop.signal.aborted) agent.status('cancelled', 'stopped by signal');
  } finally {
    agent.close();
  }
}

main().catch((e) => { console.error(`node-agent: ${e.message}`); process.exit(1); });
