// Processes of the end-to-end tests: vllm-sim and vllm-router started and stopped by PID.
// Binaries come from $VLLM_ROUTER / $VLLM_SIM (default: ../../build/...).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const VLLM_SIM = resolve(here, process.env.VLLM_SIM || '../../build/tools/vllm-sim');
export const VLLM_ROUTER = resolve(here, process.env.VLLM_ROUTER || '../../build/server/vllm-router');

const STARTUP_MS = 10_000;
// A graceful stop can take up to the router's keep-alive timeout (5 s) while the client still
// holds idle keep-alive connections (see the report); SIGKILL after this.
const SHUTDOWN_MS = 8_000;

/** @type {import('node:child_process').ChildProcess[]} */
export const children = [];

// Last resort if the runner exits without the after hook (e.g. a crash): SIGKILL by PID.
process.on('exit', () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
});

/**
 * Spawns `bin args` and resolves with the URL from its `<name> listening on http://HOST:PORT`
 * (or https://) stdout line. Rejects if the process exits, fails to start, or does not print it in time.
 */
export function startProcess(name, bin, args) {
  if (!existsSync(bin)) {
    return Promise.reject(new Error(`${name} binary not found: ${bin} (build it or set the env variable)`));
  }
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  const pattern = new RegExp(`^${name} listening on (https?://\\S+)\\s*$`, 'm');
  return new Promise((resolvePromise, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      reject(new Error(`${name} (pid ${child.pid}) ${why}\nargs: ${args.join(' ')}\nstdout: ${stdout}\nstderr: ${stderr}`));
    };
    const timer = setTimeout(() => fail(`printed no listening line within ${STARTUP_MS} ms`), STARTUP_MS);
    child.on('error', (err) => fail(`failed to start: ${err.message}`));
    child.on('exit', (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = pattern.exec(stdout);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolvePromise(m[1]);
      }
    });
  });
}

/** SIGTERM by PID, wait for the exit up to a deadline, then SIGKILL. */
export async function stopProcess(child) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(child.pid, 'SIGTERM'); } catch { return; }
  let timer;
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise((r) => { timer = setTimeout(() => r(true), SHUTDOWN_MS); }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    await exited;
  }
}
