/**
 * A Bun script that reads LLMFlow's SQLite file (env LLMFLOW_DB) with a query (env LLMFLOW_SQL)
 * and prints the rows as JSON, without ever making LLMFlow's own writes fail.
 *
 * LLMFlow 0.4.1 keeps its data in rollback-journal mode and sets no busy timeout, so any reader
 * holding its shared lock makes a concurrent insert fail at once with "database is locked": for
 * metrics LLMFlow then answers a partial success whose points the bridge rightly does not send
 * again, and a test would have lost data by looking at it. So the script reads without locks
 * (`nolock=1`, a URI filename) and keeps a read only when no commit ran during it: no journal
 * file before or after, and the database header's file change counter (bytes 24-27, bumped by
 * every commit) unchanged; otherwise it reads again.
 */
export const LLMFLOW_READ_SCRIPT = `import { Database } from 'bun:sqlite';
import { existsSync, openSync, readSync, closeSync } from 'node:fs';
const file = process.env.LLMFLOW_DB;
const journal = file + '-journal';
const changes = () => {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(4);
  readSync(fd, b, 0, 4, 24);
  closeSync(fd);
  return b.readUInt32BE(0);
};
const uri = 'file:' + encodeURI(file).replace(/[?]/g, '%3f').replace(/#/g, '%23') + '?nolock=1';
for (let attempt = 1; ; attempt++) {
  if (attempt > 500) throw new Error('LLMFlow kept writing during every read of ' + file);
  if (existsSync(journal)) { await Bun.sleep(5); continue; }
  const before = changes();
  const db = new Database(uri, 0x41); // SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
  let rows;
  try {
    rows = db.query(process.env.LLMFLOW_SQL).all();
  } catch (err) {
    // A page read half-written: the same as a changed counter, unless it keeps failing.
    if (attempt > 20) throw err;
    continue;
  } finally {
    db.close();
  }
  if (!existsSync(journal) && changes() === before) {
    process.stdout.write(JSON.stringify(rows));
    break;
  }
}`;
