// Fetching the data files: errors that explain themselves, the schema version check, JSON, and Arrow IPC tables
// behind a small interface (rows, numbers, strings, nullable, meta) read by arrow-ipc.js.

import { readArrowFile } from "./arrow-ipc.js";

export const SCHEMA_VERSION = 8;

export class AtlasDataError extends Error {
  constructor(message) {
    super(message);
    this.name = "AtlasDataError";
  }
}

export function versionError(url, found) {
  return new AtlasDataError(
    `${url} has data schema version ${found}, but this viewer reads schema version ${SCHEMA_VERSION}. ` +
      "Rebuild the site with the attention-atlas version that wrote the data.",
  );
}

export async function fetchOk(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new AtlasDataError(`could not fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new AtlasDataError(`could not fetch ${url} (HTTP ${response.status})`);
  return response;
}

const prefetched = new Map();

// Starts fetching a file the page will read soon (e.g. a head's coordinates while the tokens load).
export function prefetch(url) {
  if (!prefetched.has(url)) {
    const promise = fetchOk(url).then((r) => r.arrayBuffer());
    promise.catch(() => prefetched.delete(url));
    prefetched.set(url, promise);
  }
}

export function fetchBuffer(url) {
  const early = prefetched.get(url);
  prefetched.delete(url);
  return early || fetchOk(url).then((r) => r.arrayBuffer());
}

// Files stored gzip-compressed (attention, coordinates); a server that sends one with Content-Encoding: gzip
// hands over the plain blob instead, so both are accepted.
export async function gunzip(buffer, url) {
  const head = new Uint8Array(buffer, 0, Math.min(2, buffer.byteLength));
  if (head[0] !== 0x1f || head[1] !== 0x8b) return buffer;
  if (typeof DecompressionStream !== "function") throw new AtlasDataError(`this browser cannot decompress ${url}`);
  try {
    return await new Response(new Blob([buffer]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  } catch (err) {
    throw new AtlasDataError(`${url} is not a readable gzip file: ${err.message}`);
  }
}

// A JSON file carrying `schema_version`.
export async function fetchJson(url) {
  const response = await fetchOk(url);
  let data;
  try {
    data = await response.json();
  } catch {
    throw new AtlasDataError(`${url} is not valid JSON`);
  }
  if (data.schema_version !== SCHEMA_VERSION) throw versionError(url, data.schema_version);
  return data;
}

// An Arrow IPC file as {rows, has, numbers, strings, nullable, meta}; refuses other schema versions.
export async function loadTable(url) {
  const buffer = await fetchBuffer(url);
  let table;
  try {
    table = readArrowFile(buffer);
  } catch (err) {
    throw new AtlasDataError(`${url} is not a readable Arrow IPC file: ${err.message}`);
  }
  const version = table.metadata.get("atlas.schema_version");
  if (version !== String(SCHEMA_VERSION)) throw versionError(url, version);
  const column = (name) => {
    const col = table.columns.get(name);
    if (!col) throw new AtlasDataError(`${url} has no column "${name}"`);
    return col;
  };
  return {
    rows: table.rows,
    has: (name) => table.columns.has(name),
    meta: (key) => table.metadata.get(key),
    // Integers, floats or booleans (0/1) as a typed array.
    numbers: (name) => column(name).values,
    strings(name) {
      const { values, valid } = column(name);
      return Array.from(values, (v, i) => (valid && !valid[i]) || v === undefined || v === null ? "" : String(v));
    },
    // Values with a validity mask (null when every row is valid).
    nullable: (name) => column(name),
  };
}
