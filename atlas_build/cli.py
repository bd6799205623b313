"""`atlas` command line: build, serve, validate, init, deploy. Exit codes: 0 ok, 1 build failed, 2 bad input,
130 interrupted."""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import AtlasError, InputError

EPILOG = "exit codes: 0 success, 1 build failed, 2 bad input (manifest, data or model source), 130 interrupted"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atlas", description="Build static, browsable atlases of transformer "
                                "attention heads (AttentionViz) from a TOML manifest.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"attention-atlas {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build an atlas site from a manifest", epilog=EPILOG,
                       description="Run every stage (capture, normalize, project, metrics, export, site) for each "
                       "model of MANIFEST. Finished units are cached under OUT/cache and reused on the next run (an "
                       "interrupted capture resumes from its finished batches); the site is published to OUT/site "
                       "atomically after each model and when complete. Nothing is written outside OUT.")
    b.add_argument("manifest", type=Path, help="manifest file, e.g. data_manifests/demo.toml")
    b.add_argument("-o", "--out", type=Path, default=None,
                   help="build directory (default: build/<manifest name>); the site goes to OUT/site")
    b.add_argument("-j", "--jobs", type=int, default=1, help="worker processes for per-head work (default: 1)")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run per-head work on a Dask cluster, e.g. tcp://host:8786")
    b.add_argument("--device", default=None, help="torch device for capture: cpu, cuda, cuda:N, mps "
                   "(default: the manifest's build.device, normally auto = GPU if present)")
    b.add_argument("--force", action="store_true", help="recompute every stage, ignoring the cache")
    b.add_argument("--no-progress", action="store_true", help="no progress bars (default when not on a terminal)")
    b.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final line")
    b.add_argument("--serve", action="store_true", help="serve the site on http://127.0.0.1 from its first "
                   "publish on, while the other models build, and keep serving when the build is done")
    b.add_argument("-p", "--port", type=int, default=8000, help="port for --serve (default: 8000; 0 picks one)")

    s = sub.add_parser("serve", help="preview a built site on http://127.0.0.1", epilog=EPILOG,
                       description="Serve a built site locally (read-only, loopback only by default).")
    s.add_argument("dir", nargs="?", type=Path, default=Path("build/demo"),
                   help="a build directory (its site/ is served) or a site directory (default: build/demo)")
    s.add_argument("-p", "--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")

    v = sub.add_parser("validate", help="check manifests without building anything", epilog=EPILOG,
                       description="Validate one or more manifests; prints every problem found, exits 2 if any.")
    v.add_argument("manifests", nargs="+", type=Path, help="manifest files")

    i = sub.add_parser("init", help="create a repository that builds and publishes an atlas", epilog=EPILOG,
                       description="Write a commented manifest (atlas.toml), example data, a README, .gitignore and "
                       "a GitHub Actions workflow that installs attention-atlas, builds the atlas and deploys it to "
                       "GitHub Pages.")
    i.add_argument("dir", type=Path, help="the new repository's folder (created if missing; must be empty)")
    i.add_argument("--force", action="store_true", help="write into a non-empty folder, replacing the scaffold's "
                   "files (each one replaced is named)")

    d = sub.add_parser("deploy", help="push a built site to the gh-pages branch", epilog=EPILOG,
                       description="Commit OUT/site to the gh-pages branch of the git repository in the current "
                       "directory (with .nojekyll) and force-push it, as `mkdocs gh-deploy` does. The working tree "
                       "must have no uncommitted changes.")
    d.add_argument("out", type=Path, help="a build directory (its site/ is deployed) or a site directory")
    d.add_argument("--remote", default="origin", help="git remote to push to (default: origin)")
    d.add_argument("--branch", default="gh-pages", help="branch to commit the site to (default: gh-pages)")
    d.add_argument("-m", "--message", default=None, help="commit message (default names the source commit)")
    return p


def _cmd_build(args: argparse.Namespace) -> int:
    from .cache import confine_caches
    from .manifest import load_manifest
    from .outdir import check_location

    if args.jobs < 1:
        raise InputError(f"--jobs: expected a positive integer, got {args.jobs}")
    load_manifest(args.manifest)  # every manifest problem at once, before the slow imports
    out = check_location(args.out or Path("build") / args.manifest.stem)
    confine_caches(out / "cache")  # before torch is imported
    from .pipeline import build

    progress = not args.no_progress and sys.stderr.isatty() and not os.environ.get("CI")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    # Bound before the build, so a busy port stops it at once; it starts answering at the first publish.
    httpd = _server(out / "site", "127.0.0.1", args.port) if args.serve else None
    started = threading.Event()

    def on_publish(site: Path) -> None:
        if httpd is not None and not started.is_set():
            started.set()
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            print(f"serving {site} at {_url(httpd)} (Ctrl-C to stop)", flush=True)

    try:
        report = build(args.manifest, out, jobs=args.jobs, scheduler=args.scheduler, force=args.force,
                       progress=progress, device=args.device, log=log, on_publish=on_publish)
        print(f"built {report.site_dir} in {report.seconds:.1f} s", flush=True)
        if started.is_set():
            try:
                threading.Event().wait()  # keep serving until Ctrl-C
            except KeyboardInterrupt:
                pass
    finally:
        if httpd is not None:
            if started.is_set():
                httpd.shutdown()
            httpd.server_close()
    return 1 if report.failed else 0


def _url(httpd: http.server.ThreadingHTTPServer) -> str:
    return f"http://{httpd.server_address[0]}:{httpd.server_address[1]}/"


def _server(root: Path, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """A read-only HTTP server for the site at ``root`` (the path is resolved per request, so a site swapped in by
    a later publish is served from then on); InputError when the address cannot be bound."""
    try:
        return http.server.ThreadingHTTPServer((host, port), functools.partial(_QuietHandler, directory=str(root)))
    except OSError as e:
        raise InputError(f"cannot serve on {host}:{port}: {e.strerror or e}; choose another port with -p") from None


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validate import validate

    status = 0
    for path in args.manifests:
        result = validate(path)
        for problem in result.problems:
            print(f"error: {problem}", file=sys.stderr)
        if result.problems:
            status = 2
            print(f"{path}: {len(result.problems)} problem{'s' * (len(result.problems) != 1)}", file=sys.stderr)
        else:
            print(f"{path}: ok")
            for line in result.estimate:
                print(f"  {line}")
    return status


def _cmd_serve(args: argparse.Namespace) -> int:
    from .outdir import servable

    root = servable(args.dir) or args.dir
    if not (root / "index.html").is_file():
        raise InputError(f"{args.dir}: no built site here (expected index.html or site/index.html); "
                         "run `atlas build MANIFEST` first")
    with _server(root, args.host, args.port) as httpd:
        print(f"serving {root} at {_url(httpd)} (Ctrl-C to stop)", flush=True)
        httpd.serve_forever()
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from .repository import init_repo

    written = init_repo(args.dir, force=args.force, log=lambda msg: print(msg, file=sys.stderr))
    print(f"wrote {len(written)} files to {args.dir}; next: cd {args.dir} && atlas validate atlas.toml")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from .repository import deploy

    site = deploy(args.out, remote=args.remote, branch=args.branch, message=args.message)
    print(f"deployed {site} to {args.remote}/{args.branch}")
    return 0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".arrow": "application/vnd.apache.arrow.file",
                      ".bin": "application/octet-stream"}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler, `kill`, a CI timeout): unwound like Ctrl-C so worker processes are shut down."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def _warning_line(show: Callable[..., None]) -> Callable[..., None]:
    """A `warnings.showwarning` that prints this package's warnings (they address the user: an image skipped, a
    cache not written) as one `warning:` line, and hands the others to `show`."""
    package = Path(__file__).resolve().parent

    def shown(message: Warning | str, category: type[Warning], filename: str, lineno: int, file=None,
              line: str | None = None) -> None:
        if Path(filename).resolve().is_relative_to(package):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"build": _cmd_build, "serve": _cmd_serve, "validate": _cmd_validate, "init": _cmd_init,
                "deploy": _cmd_deploy}
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    show = warnings.showwarning
    warnings.showwarning = _warning_line(show)
    try:
        return commands[args.command](args)
    except KeyboardInterrupt as e:
        print("interrupted: finished units are kept in the cache; run the same command again to resume",
              file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(e, Terminated) else 130
    except AtlasError as e:
        for problem in getattr(e, "problems", [e]):
            print(f"error: {problem}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the file system refused something no input check could foresee (full disk, permissions)
        print(f"error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "), file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
