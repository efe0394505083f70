// A real anyai-server process for the Node end-to-end tests (the Node twin of
// anyai_server_process.py):
//
//   const server = await startServer(binary, { adminToken: 't', prefix: 'anyai-e2e-x-',
//                                              extraArgs: ['--config=FILE'] });
//   server.grpcAddress   // '127.0.0.1:PORT'
//   server.httpPort      // PORT
//   server.adminAddress  // '127.0.0.1:PORT', the Admin service's own listener
//   await server.stop(); // SIGTERM, SIGKILL after a timeout; asserts a clean exit; temp dir gone
//
// The server listens on 127.0.0.1 port 0 (gRPC, HTTP and Admin, so parallel tests never
// collide) with a fresh temp data dir; the bound ports are read from its stdout ("grpc
// listening on HOST:PORT", "http listening on HOST:PORT", "admin listening on HOST:PORT"),
// waiting on the pipe rather than sleeping.
// Timeouts are generous because the same tests run against the AddressSanitizer build.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const START_TIMEOUT_MS = 60_000;
export const STOP_TIMEOUT_MS = 30_000;
const SETPRIV = '/usr/bin/setpriv';
const LISTENING = /^(grpc|http|admin) listening on (\S+):(\d+)\s*$/;

// One anyai-server child process; resolves once it printed its gRPC, HTTP and Admin addresses.
// `extraArgs` go after the listen and data dir flags (e.g. ['--config=/tmp/x.textproto']).
export async function startServer(binary,
  { adminToken, prefix = 'anyai-e2e-node-', extraArgs = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const args = [
    binary,
    '--grpc_listen=127.0.0.1:0', '--http_listen=127.0.0.1:0', '--admin_listen=127.0.0.1:0',
    `--data_dir=${join(dir, 'data')}`,
    ...extraArgs,
  ];
  // Through util-linux's setpriv (it execs the server, same pid) when there is one, so that
  // the server gets SIGKILL if this process dies without cleaning up (e.g. a ctest timeout).
  const [command, ...commandArgs] = existsSync(SETPRIV)
    ? [SETPRIV, '--pdeathsig', 'KILL', '--', ...args] : args;
  const env = { ...process.env };
  if (adminToken) env.ANYAI_ADMIN_TOKEN = adminToken;
  else delete env.ANYAI_ADMIN_TOKEN;
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit); // never leave a server behind, even on a crash
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text) => { stderr = (stderr + text).slice(-20_000); });
  // Settles when the process is gone, or was never there (spawn failed: 'error', no 'exit').
  let spawnError = null;
  const exited = new Promise((resolveExit) => {
    child.on('exit', (code, signal) => resolveExit({ code, signal }));
    child.on('error', (error) => {
      spawnError = error;
      resolveExit({ code: null, signal: null });
    });
  });
  const server = {
    child, dir, exited, grpcAddress: null, httpPort: null, adminAddress: null,
    stderr: () => stderr,
    async stop() {
      let killed = false;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
      const { code, signal } = await exited;
      assert.ok(!killed && code === 0,
        `anyai-server did not stop cleanly on SIGTERM (code ${code}, signal ${signal}` +
        `${killed ? ', killed after timeout' : ''}); stderr:\n${stderr}`);
    },
  };
  try {
    const ports = await new Promise((resolvePorts, reject) => {
      const found = {};
      const timer = setTimeout(() => reject(new Error(
        `anyai-server printed no 'grpc listening on', 'http listening on' and 'admin ` +
        `listening on' lines within ` +
        `${START_TIMEOUT_MS} ms (got ${JSON.stringify(found)}); stderr:\n${stderr}`)),
      START_TIMEOUT_MS);
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        const match = LISTENING.exec(line);
        if (!match) return;
        found[match[1]] = Number(match[3]);
        if (found.grpc && found.http && found.admin) {
          clearTimeout(timer);
          resolvePorts(found);
        }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(spawnError
          ? `cannot start ${binary}: ${spawnError.message}`
          : `anyai-server exited (code ${code}, signal ${signal}) before listening; ` +
            `stderr:\n${stderr}`));
      });
    });
    server.grpcAddress = `127.0.0.1:${ports.grpc}`;
    server.httpPort = ports.http;
    server.adminAddress = `127.0.0.1:${ports.admin}`;
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return server;
}

// The npm packages of `names` that are not installed in `nodeModules`.
export function missingPackages(nodeModules, names) {
  return names.filter(
    (name) => !existsSync(join(nodeModules, ...name.split('/'), 'package.json')));
}
