// graphile-worker adapter: the same command protocol as adapters/common.py.
// Worker setting: the documented performance configuration (concurrentJobs 24, maxPoolSize 25,
// localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0). Jobs are deleted when done.
import { makeWorkerUtils, run, runMigrations, Logger } from "graphile-worker";
import readline from "node:readline";

const [cmd, dsn, ...rest] = process.argv.slice(2);
const quiet = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});
const say = (line) => process.stdout.write(line + "\n");
const epoch = () => ((performance.timeOrigin + performance.now()) / 1000).toFixed(6);
const BULK = 1000;

async function producer(fn) {
  const utils = await makeWorkerUtils({ connectionString: dsn, maxPoolSize: 1, logger: quiet });
  try {
    await fn({
      one: (k) => utils.addJob("noop", { k }),
      many: (ks) => utils.addJobs(ks.map((k) => ({ identifier: "noop", payload: { k } }))),
    });
  } finally {
    await utils.release();
  }
}

const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

if (cmd === "setup") {
  await runMigrations({ connectionString: dsn, logger: quiet });
  say(JSON.stringify({ ok: true }));
} else if (cmd === "enqueue") {
  // bulk only, 1,000 per call; one call per job: `turns`
  const n = Number(rest[0]);
  let dt = 0;
  await producer(async (p) => {
    const t0 = performance.now();
    for (let s = 0; s < n; s += BULK) await p.many(range(s, Math.min(n, s + BULK)));
    dt = (performance.now() - t0) / 1000;
  });
  say(JSON.stringify({ n, seconds: dt }));
} else if (cmd === "produce") {
  const seconds = Number(rest[0]);
  const batch = Number(rest[1]);
  let n = 0;
  let dt = 0;
  await producer(async (p) => {
    const t0 = performance.now();
    while ((performance.now() - t0) / 1000 < seconds) {
      if (batch === 1) await p.one(n);
      else await p.many(range(n, n + batch));
      n += batch;
    }
    dt = (performance.now() - t0) / 1000;
  });
  say(JSON.stringify({ n, seconds: dt }));
} else if (cmd === "pace") {
  // batches on a fixed schedule: RATE jobs/s; `SENT n epoch` after each call
  const [seconds, batch, rate] = rest.map(Number);
  let n = 0;
  let dt = 0;
  await producer(async (p) => {
    const t0 = performance.now();
    for (let now = t0; (now - t0) / 1000 < seconds; now = performance.now()) {
      const due = t0 + (n / rate) * 1000;
      if (due > now) await new Promise((r) => setTimeout(r, due - now));
      await p.many(range(n, n + batch));
      n += batch;
      say(`SENT ${n} ${epoch()}`);
    }
    dt = (performance.now() - t0) / 1000;
  });
  say(JSON.stringify({ n, seconds: dt }));
} else if (cmd === "turns") {
  const chunk = Number(rest[0]);
  let k = 0;
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await producer(async (p) => {
    await p.one(-1); // connect and warm up outside the timing
    say("READY");
    for (let line = await lines.next(); !line.done && line.value.trim() === "go"; line = await lines.next()) {
      const t0 = performance.now();
      for (let i = 0; i < chunk; i++) await p.one(k++);
      say(`DONE ${((performance.now() - t0) / 1000).toFixed(6)}`);
    }
  });
  say(JSON.stringify({ n: k }));
  process.exit(0);
} else if (cmd === "probe") {
  const n = Number(rest[0]);
  const gap = Number(rest[1]);
  await producer(async (p) => {
    for (let k = 0; k < n; k++) {
      await p.one(k);
      say(`SENT ${k} ${epoch()}`);
      await new Promise((r) => setTimeout(r, gap));
    }
  });
  say(JSON.stringify({ n }));
} else if (cmd === "worker") {
  const trace = rest.includes("--trace");
  const runner = await run({
    connectionString: dsn,
    concurrency: 24,
    maxPoolSize: 25,
    noHandleSignals: true,
    logger: quiet,
    taskList: {
      noop: async (payload) => {
        if (trace) say(`START ${payload.k} ${epoch()}`);
      },
    },
    preset: {
      worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
    },
  });
  say(`READY ${epoch()}`);
  const stop = async () => {
    await runner.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await runner.promise;
} else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
