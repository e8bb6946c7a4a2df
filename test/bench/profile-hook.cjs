// Preloaded into a bridge with `--require` (BENCH_PROFILE=cpu, worker-cost.ts): a CPU profile of
// the whole process, written as it exits. Node 20 refuses --cpu-prof in NODE_OPTIONS; the
// inspector does the same from inside.
const inspector = require('node:inspector');
const fs = require('node:fs');
const path = require('node:path');

const session = new inspector.Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: 500 });
session.post('Profiler.start');
process.on('exit', () => {
  session.post('Profiler.stop', (err, res) => {
    if (err) return;
    const dir = process.env.BENCH_PROFILE_DIR;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `bridge-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
  });
});
