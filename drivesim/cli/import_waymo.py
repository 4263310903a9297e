"""`drivesim import womd|gpudrive FILE|DIR`: Waymo Open Motion logs -> scenario files.

A folder is imported file by file in worker processes (`--workers`, 2 by default;
concurrent.futures), with a progress bar (tqdm) and a summary line: how many scenarios were
imported and how many files were skipped, each with its reason. Every scenario is written as a
drivesim scenario file (io/scenario_file.py) named after the scenario. Registered from cli.py
(`add_import_arguments` on the `import` parser; `cmd_import` for the `IMPORTERS` entries with `per_file`).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from drivesim.cli.options import EXIT_FAILED, finish, output_dir
from drivesim.io.importers import IMPORTERS


def add_import_arguments(parser) -> None:
    parser.add_argument("--workers", type=int, default=2,
                        help="womd/gpudrive folders: processes importing files in parallel (default 2; 1: in this process)")


def _import_one(source: str, path: str, out: str) -> tuple[list[tuple[str, int, int, int, str, float]], str | None]:
    """Import one file and write its scenarios: ([(name, agents, lanes, steps, hash, seconds)], error)."""
    import torch

    from drivesim import __version__
    from drivesim.io.errors import ImportDataError
    from drivesim.io.scenario_file import save_scenario, scenario_hash

    torch.set_num_threads(1)
    module = IMPORTERS[source].module()
    t0 = time.perf_counter()
    try:
        loaded = module.load_file(path)
    except (ImportDataError, OSError) as exc:
        return [], str(exc)
    scenarios = loaded if isinstance(loaded, list) else [loaded]
    seconds = (time.perf_counter() - t0) / max(len(scenarios), 1)
    rows = []
    for s in scenarios:
        s.meta = {**s.meta, "imported_by": f"drivesim {__version__}"}
        save_scenario(s, Path(out) / f"{_file_name(s.name)}.npz")
        rows.append((s.name, s.num_agents, len(s.road.lanes), s.num_steps, scenario_hash(s), seconds))
    return rows, None


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def cmd_import(args) -> int:
    """Import a WOMD TFRecord / GPUDrive JSON file or folder into `args.out`."""
    from tqdm import tqdm

    module = IMPORTERS[args.source].module()
    path, out = Path(args.path), output_dir(args.out)
    if not path.exists():
        raise SystemExit(f"error: {path}: no such file or directory")
    files = [path] if path.is_file() else module.source_files(path)
    if not files:
        raise SystemExit(f"error: {path}: no {args.source} files here")
    t0 = time.perf_counter()
    rows, errors = [], []
    workers = max(1, int(getattr(args, "workers", 2) or 1))
    if len(files) == 1 or workers == 1:
        for f in tqdm(files, desc=f"import {args.source}", unit="file", disable=len(files) == 1, file=sys.stderr):
            r, e = _import_one(args.source, str(f), str(out))
            rows += r
            errors += [e] if e else []
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(files))) as pool:
            jobs = [pool.submit(_import_one, args.source, str(f), str(out)) for f in files]
            for job in tqdm(as_completed(jobs), total=len(jobs), desc=f"import {args.source}", unit="file", file=sys.stderr):
                r, e = job.result()
                rows += r
                errors += [e] if e else []
    print(f"{'scenario':44s} {'agents':>6s} {'lanes':>5s} {'steps':>5s} {'seconds':>7s}  hash")
    for name, agents, lanes, steps, digest, seconds in sorted(rows):
        print(f"{name[:44]:44s} {agents:6d} {lanes:5d} {steps:5d} {seconds:7.2f}  {digest[:12]}")
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    print(f"imported {len(rows)} scenario(s) from {len(files) - len(errors)} {args.source} file(s) into {out}, "
          f"skipped {len(errors)} file(s){' (reasons above)' if errors else ''}, in {time.perf_counter() - t0:.1f} s")
    return finish(args, skipped=len(errors)) if rows else EXIT_FAILED
