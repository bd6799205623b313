// A small reader for the Arrow IPC files of docs/reference/formats.md (the "file" format: ARROW1 magic, footer,
// schema, dictionary and record batches; little-endian, uncompressed). It reads the column types the atlas
// writes — signed/unsigned integers, float32/64, bool, utf8 and dictionary-encoded utf8, each possibly with nulls
// — plus the schema's key/value metadata, and refuses anything else with a clear message. It replaces Apache
// Arrow's 180 KB browser bundle, which a head page would otherwise load before its first point.

const MAGIC = "ARROW1";
const HEADER = { SCHEMA: 1, DICTIONARY: 2, RECORD_BATCH: 3 };
const TYPE = { INT: 2, FLOAT: 3, UTF8: 5, BOOL: 6 };

export class ArrowFormatError extends Error {}

// Minimal flatbuffers access: a table is a byte position; fields are read through its vtable.
class Flat {
  constructor(view) {
    this.view = view;
  }

  root(at) {
    return at + this.view.getUint32(at, true);
  }

  field(table, index) {
    const vtable = table - this.view.getInt32(table, true);
    const size = this.view.getUint16(vtable, true);
    const slot = 4 + 2 * index;
    const off = slot < size ? this.view.getUint16(vtable + slot, true) : 0;
    return off ? table + off : 0;
  }

  int(table, index, kind, fallback = 0) {
    const at = this.field(table, index);
    if (!at) return fallback;
    const v = this.view;
    switch (kind) {
      case "u8": return v.getUint8(at);
      case "i16": return v.getInt16(at, true);
      case "i32": return v.getInt32(at, true);
      default: return Number(v.getBigInt64(at, true));
    }
  }

  // Position of the table/vector/string an offset field points to, or 0.
  ref(table, index) {
    const at = this.field(table, index);
    return at ? at + this.view.getUint32(at, true) : 0;
  }

  vector(table, index) {
    const at = this.ref(table, index);
    return at ? { start: at + 4, length: this.view.getUint32(at, true) } : { start: 0, length: 0 };
  }

  tables(table, index) {
    const { start, length } = this.vector(table, index);
    return Array.from({ length }, (_, i) => start + 4 * i + this.view.getUint32(start + 4 * i, true));
  }

  string(table, index) {
    const at = this.ref(table, index);
    if (!at) return null;
    const length = this.view.getUint32(at, true);
    return new TextDecoder().decode(new Uint8Array(this.view.buffer, this.view.byteOffset + at + 4, length));
  }
}

function typeOf(fb, field) {
  const kind = fb.int(field, 2, "u8");
  const type = fb.ref(field, 3);
  if (kind === TYPE.INT) return { kind: "int", bits: fb.int(type, 0, "i32"), signed: !!fb.int(type, 1, "u8") };
  if (kind === TYPE.FLOAT) return { kind: "float", bits: [16, 32, 64][fb.int(type, 0, "i16")] };
  if (kind === TYPE.UTF8) return { kind: "utf8" };
  if (kind === TYPE.BOOL) return { kind: "bool" };
  return { kind: `unsupported (Arrow type id ${kind})` };
}

function readSchema(fb, schema) {
  const fields = fb.tables(schema, 1).map((f) => {
    const dictionary = fb.ref(f, 4);
    const out = { name: fb.string(f, 0), type: typeOf(fb, f), dictionary: null };
    if (dictionary) {
      const index = fb.ref(dictionary, 1);
      const indexType = index ? { kind: "int", bits: fb.int(index, 0, "i32"), signed: !!fb.int(index, 1, "u8") } : { kind: "int", bits: 32, signed: true };
      out.dictionary = { id: fb.int(dictionary, 0, "i64"), index: indexType };
    }
    return out;
  });
  const metadata = new Map(fb.tables(schema, 2).map((kv) => [fb.string(kv, 0), fb.string(kv, 1)]));
  return { fields, metadata };
}

const ARRAYS = { 8: [Int8Array, Uint8Array], 16: [Int16Array, Uint16Array], 32: [Int32Array, Uint32Array], 64: [BigInt64Array, BigUint64Array] };

function typed(Kind, bytes, at, length) {
  const offset = bytes.byteOffset + at;
  if (offset % Kind.BYTES_PER_ELEMENT === 0) return new Kind(bytes.buffer, offset, length);
  return new Kind(bytes.slice(at, at + length * Kind.BYTES_PER_ELEMENT).buffer);
}

// One record batch's columns: {length, columns: [{values, valid}]} for the given (non-dictionary) types.
function readBatch(fb, bytes, batch, bodyAt, types) {
  const length = fb.int(batch, 0, "i64");
  const nodes = fb.vector(batch, 1);
  const buffers = fb.vector(batch, 2);
  if (fb.ref(batch, 3)) throw new ArrowFormatError("compressed record batches are not supported");
  const view = fb.view;
  let b = 0;
  const next = () => {
    const at = buffers.start + 16 * b++;
    return { at: bodyAt + Number(view.getBigInt64(at, true)), size: Number(view.getBigInt64(at + 8, true)) };
  };
  const columns = types.map((type, i) => {
    const n = Number(view.getBigInt64(nodes.start + 16 * i, true));
    const nulls = Number(view.getBigInt64(nodes.start + 16 * i + 8, true));
    const validity = next();
    const valid = nulls ? Uint8Array.from({ length: n }, (_, r) => (bytes[validity.at + (r >> 3)] >> (r & 7)) & 1) : null;
    if (type.kind === "int") {
      const data = next();
      const values = typed(ARRAYS[type.bits][type.signed ? 0 : 1], bytes, data.at, n);
      return { values: type.bits === 64 ? Float64Array.from(values, Number) : values, valid };
    }
    if (type.kind === "float") {
      if (type.bits === 16) throw new ArrowFormatError("float16 columns are not supported");
      return { values: typed(type.bits === 32 ? Float32Array : Float64Array, bytes, next().at, n), valid };
    }
    if (type.kind === "bool") {
      const data = next().at;
      return { values: Uint8Array.from({ length: n }, (_, r) => (bytes[data + (r >> 3)] >> (r & 7)) & 1), valid };
    }
    if (type.kind === "utf8") {
      const offsets = typed(Int32Array, bytes, next().at, n + 1);
      const data = next().at;
      const decoder = new TextDecoder();
      const values = Array.from({ length: n }, (_, r) => decoder.decode(bytes.subarray(data + offsets[r], data + offsets[r + 1])));
      return { values, valid };
    }
    throw new ArrowFormatError(`column type ${type.kind} is not supported`);
  });
  return { length, columns };
}

function emptyOf(type) {
  if (type.kind === "int") return type.bits === 64 ? Float64Array : ARRAYS[type.bits][type.signed ? 0 : 1];
  if (type.kind === "float") return type.bits === 32 ? Float32Array : Float64Array;
  return type.kind === "bool" ? Uint8Array : Array;
}

// The columns of several record batches as one {values, valid}.
function concat(parts, Kind) {
  if (parts.length === 1) return parts[0];
  const length = parts.reduce((n, p) => n + p.values.length, 0);
  const values = Kind === Array ? [] : new Kind(length);
  const valid = parts.some((p) => p.valid) ? new Uint8Array(length) : null;
  let at = 0;
  for (const p of parts) {
    if (Kind === Array) values.push(...p.values);
    else values.set(p.values, at);
    if (valid) valid.set(p.valid || new Uint8Array(p.values.length).fill(1), at);
    at += p.values.length;
  }
  return { values, valid };
}

// Reads a whole Arrow IPC file: {rows, metadata: Map, columns: Map name → {values, valid}} (values of a
// dictionary-encoded column are its decoded strings).
export function readArrowFile(buffer) {
  const bytes = new Uint8Array(buffer);
  const text = (at) => String.fromCharCode(...bytes.subarray(at, at + MAGIC.length));
  if (bytes.length < 12 || text(0) !== MAGIC || text(bytes.length - MAGIC.length) !== MAGIC) {
    throw new ArrowFormatError("not an Arrow IPC file (no ARROW1 magic)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fb = new Flat(view);
  const footerLength = view.getInt32(bytes.length - MAGIC.length - 4, true);
  const footer = fb.root(bytes.length - MAGIC.length - 4 - footerLength);
  const { fields, metadata } = readSchema(fb, fb.ref(footer, 1));
  const blocks = (index) => {
    const { start, length } = fb.vector(footer, index);
    return Array.from({ length }, (_, i) => {
      const at = start + 24 * i;
      return { offset: Number(view.getBigInt64(at, true)), meta: view.getInt32(at + 8, true) };
    });
  };
  // A block: 0xFFFFFFFF, the message length, the Message flatbuffer, then the body.
  const message = ({ offset, meta }) => {
    const skip = view.getInt32(offset, true) === -1 ? 8 : 4;
    const msg = fb.root(offset + skip);
    return { type: fb.int(msg, 1, "u8"), header: fb.ref(msg, 2), bodyAt: offset + meta };
  };
  const dictionaries = new Map();
  for (const block of blocks(2)) {
    const { type, header, bodyAt } = message(block);
    if (type !== HEADER.DICTIONARY) throw new ArrowFormatError("a dictionary block holds another message");
    if (fb.int(header, 2, "u8")) throw new ArrowFormatError("delta dictionaries are not supported");
    const id = fb.int(header, 0, "i64");
    const field = fields.find((f) => f.dictionary && f.dictionary.id === id);
    if (!field) throw new ArrowFormatError(`dictionary ${id} belongs to no column`);
    dictionaries.set(id, readBatch(fb, bytes, fb.ref(header, 1), bodyAt, [field.type]).columns[0].values);
  }
  const types = fields.map((f) => (f.dictionary ? f.dictionary.index : f.type));
  const batches = blocks(3).map((block) => {
    const { type, header, bodyAt } = message(block);
    if (type !== HEADER.RECORD_BATCH) throw new ArrowFormatError("a record batch block holds another message");
    return readBatch(fb, bytes, header, bodyAt, types);
  });
  const columns = new Map();
  fields.forEach((f, i) => {
    const col = concat(batches.map((batch) => batch.columns[i]), f.dictionary ? Int32Array : emptyOf(f.type));
    if (f.dictionary) {
      const dict = dictionaries.get(f.dictionary.id) || [];
      col.values = Array.from(col.values, (k) => dict[k]);
    }
    columns.set(f.name, col);
  });
  const rows = batches.reduce((n, batch) => n + batch.length, 0);
  return { rows, metadata, columns };
}
