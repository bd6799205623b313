"""The views' own Arrow IPC reader (assets/atlas/arrow-ipc.js) against files written by pyarrow."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import synthetic_format as sf

pytestmark = pytest.mark.browser

READ = """async (url) => {
  const { readArrowFile } = await import(new URL('/assets/atlas/arrow-ipc.js', location.href).href);
  const t = readArrowFile(await (await fetch(url)).arrayBuffer());
  const cols = {};
  for (const [name, c] of t.columns) cols[name] = { values: Array.from(c.values, (v) => (typeof v === 'bigint' ? Number(v) : v)),
    valid: c.valid ? Array.from(c.valid) : null };
  return { rows: t.rows, metadata: Object.fromEntries(t.metadata), cols };
}"""


def _table(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    words = [f"w{i % 13}" if i % 5 else "ünï<b>" for i in range(n)]
    # 64-bit integers come back as doubles: exact up to 2^53, which is all the atlas ever stores
    cols = {f"{'i' if signed else 'u'}{bits}": pa.array(rng.integers(-100 if signed else 0, 2**(min(bits, 53) - 2), n),
                                                         getattr(pa, f"{'int' if signed else 'uint'}{bits}")())
            for bits in (8, 16, 32, 64) for signed in (True, False)}
    cols["f32"] = pa.array(rng.normal(size=n).astype(np.float32), pa.float32())
    cols["f64"] = pa.array(rng.normal(size=n), pa.float64())
    cols["flag"] = pa.array([None if i % 7 == 3 else bool(i % 2) for i in range(n)], pa.bool_())
    cols["text"] = pa.array([None if i % 11 == 4 else w for i, w in enumerate(words)], pa.string())
    cols["ids"] = pa.array([None if i % 3 == 0 else 70_000 + i for i in range(n)], pa.uint32())
    for index in (pa.int8(), pa.int16(), pa.int32()):
        codes = pa.array(np.arange(n) % 13, index)
        cols[f"dict_{index}"] = pa.DictionaryArray.from_arrays(codes, pa.array([f"d{k}" for k in range(13)]))
    return pa.table(cols).replace_schema_metadata({"atlas.schema_version": "2", "atlas.note": "ä json {\"a\": 1}"})


@pytest.mark.parametrize("n", [0, 1, 77, 1000])
def test_reader_matches_pyarrow(synthetic, tab, n):
    table = _table(n)
    name = f"reader-{n}.arrow"
    sf.write_arrow(synthetic.root / "data" / name, table)
    tab.page.goto(f"{synthetic.url}")
    got = tab.page.evaluate(READ, f"{synthetic.url}data/{name}")
    assert got["rows"] == n and got["metadata"] == {"atlas.schema_version": "2", "atlas.note": "ä json {\"a\": 1}"}
    for column in table.column_names:
        want = table.column(column).to_pylist()
        col = got["cols"][column]
        valid = col["valid"] or [1] * n
        values = [v if ok else None for v, ok in zip(col["values"], valid)]
        if column == "flag":
            values = [None if v is None else bool(v) for v in values]
        if column in ("f32", "f64"):
            assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(values, want)), column
        else:
            assert values == want, column
    assert not tab.errors


def test_reader_refuses_what_it_cannot_read(synthetic, tab):
    sf.write_arrow(synthetic.root / "data" / "half.arrow",
                   pa.table({"h": pa.array(np.ones(3, np.float16))}))
    (synthetic.root / "data" / "junk.arrow").write_bytes(b"not arrow at all")
    tab.page.goto(f"{synthetic.url}")
    for name, message in [("half.arrow", "float16"), ("junk.arrow", "ARROW1")]:
        error = tab.page.evaluate(f"async (url) => {{ try {{ await ({READ})(url); return ''; }} "
                                  f"catch (e) {{ return e.message; }} }}", f"{synthetic.url}data/{name}")
        assert message in error
