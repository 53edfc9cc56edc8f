// The QPF plugin SDK for JavaScript, over the `qpf:extractor` world as jco exposes it.
//
//   import { definePlugin, file } from '@qpf/sdk';
//   export const { info, extract } = definePlugin({
//     name: 'hello', version: '0.1.0', description: 'Writes a greeting per schema.', kinds: ['Agent'],
//     extract(request) { return [file('hello.txt', `hello, ${request.schema.name}\n`)]; },
//   });
//
// `qpf plugin build` bundles the module with its npm dependencies and builds the component with
// `jco componentize --disable all` (no WASI imports). Whatever `extract` throws (an ExtractError,
// another Error, a string, any object) becomes an `extract-error`, never a trap.

import { log as hostLog } from 'qpf:extractor/log@0.2.0';

/** The plugin cannot produce output for this input; the host reports it with its diagnostics. */
export class ExtractError extends Error {
  constructor(message, diagnostics = []) {
    super(message);
    this.name = 'ExtractError';
    this.diagnostics = diagnostics;
  }
}

/**
 * A generated file to write, relative to the entry's output folder; strings are encoded as UTF-8.
 * QPF owns it: rewritten on every run, checked for drift, removed when no longer produced.
 */
export function file(path, contents) {
  return { path, contents };
}

/**
 * A scaffold: written only when absent, then its user's (never overwritten, drift-checked or
 * removed): a place for a team's own code.
 */
export function scaffold(path, contents) {
  return { path, contents, scaffold: true };
}

/** A diagnostic; `pointer` (a JSON Pointer into the input) lets the host show the schema line. */
export function diagnostic(message, { severity = 'warning', pointer } = {}) {
  return { severity, message, pointer };
}

/** Logging through the host (`QPF_LOG=debug` shows debug lines). */
export const log = {
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

const encoder = new TextEncoder();

function toDiagnostic(d) {
  const severity = ['error', 'warning', 'info'].includes(d.severity) ? d.severity : 'warning';
  return { severity, message: String(d.message), pointer: d.pointer === undefined || d.pointer === null ? undefined : String(d.pointer) };
}

function toResponse(result) {
  const r = Array.isArray(result) ? { files: result } : result;
  if (r === null || typeof r !== 'object' || !Array.isArray(r.files)) {
    throw new TypeError('extract must return an array of files or { files, diagnostics, spawns }');
  }
  return {
    files: r.files.map((f) => ({
      path: String(f.path),
      contents: typeof f.contents === 'string' ? encoder.encode(f.contents) : new Uint8Array(f.contents),
      mode: f.scaffold === true ? 'scaffold' : 'generated',
    })),
    diagnostics: (r.diagnostics || []).map(toDiagnostic),
    spawns: (r.spawns || []).map((s) => ({
      plugin: String(s.plugin),
      input: JSON.stringify(s.input ?? null),
      config: JSON.stringify(s.config ?? {}),
    })),
  };
}

function describe(thrown) {
  if (thrown instanceof Error) return `${thrown.name}: ${thrown.message}`;
  if (typeof thrown === 'string') return thrown;
  try {
    return `thrown value: ${JSON.stringify(thrown)}`;
  } catch {
    return `thrown value: ${String(thrown)}`;
  }
}

/** The `info` and `extract` exports of a plugin. */
export function definePlugin({ name, version, description = '', kinds = [], configSchema = null, extract }) {
  return {
    info() {
      return { name, version, description, kinds, configSchema: configSchema === null ? '' : JSON.stringify(configSchema) };
    },
    extract(request) {
      try {
        const req = {
          entry: request.entry,
          schema: request.schema,
          input: JSON.parse(request.input),
          config: JSON.parse(request.config),
          context: JSON.parse(request.context),
        };
        return toResponse(extract(req));
      } catch (thrown) {
        // jco turns a thrown `{ message, diagnostics }` into the `err` case of the result.
        const diagnostics = thrown instanceof ExtractError ? thrown.diagnostics.map(toDiagnostic) : [];
        const message = thrown instanceof ExtractError ? thrown.message : describe(thrown);
        throw { message, diagnostics };
      }
    },
  };
}
