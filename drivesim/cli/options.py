"""Checks the commands share: option types, the output folder, policy identity, the files a
command skipped, and the exit codes (docs/reliability.md).

Exit codes: 0 everything ran; 1 a clear error stopped the command (the message starts with
`error:`); 2 a usage error (argparse); 3 the command finished but some scenario errored or an
input file could not be read (the results say which; `--allow-errors` makes that 0).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import sys
import tempfile
from pathlib import Path

import drivesim

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_CODES_HELP = ("exit codes: 0 everything ran; 1 an error stopped it (the message says what); 2 a usage error; "
                   "3 it finished but some scenario errored or an input file was skipped (--allow-errors: 0). "
                   "See docs/reliability.md.")
EXPERT_NAME = "pdm_expert"  # the reference expert: no other policy may take this name


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def output_dir(path: str | Path) -> Path:
    """The output folder, created and checked writable before anything runs (a clear error if not)."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SystemExit(f"error: output folder {path}: {existing} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".drivesim-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SystemExit(f"error: output folder {path} is not writable: {exc.strerror or exc}") from None
    return path


def add_allow_errors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-errors", action="store_true",
                        help="exit 0 even when a scenario errored or an input file was skipped (default: exit 3)")


def skipped_files(errors: list[str]) -> dict[str, str]:
    """{file name: reason} of loader messages of the form 'PATH: reason' (the message is the reason)."""
    out = {}
    for i, message in enumerate(errors):
        head, sep, _ = str(message).partition(": ")
        name = Path(head).name if sep and head else f"file {i + 1}"
        while name in out:
            name += f" ({i + 1})"
        out[name] = str(message)
    return out


def report_skipped(errors: list[str], where) -> None:
    """Each file a command could not read, with the reason, on stderr."""
    for message in errors:
        print(f"warning: skipped {message}", file=sys.stderr)
    if errors:
        print(f"warning: {len(errors)} file(s) in {where} could not be read and were skipped", file=sys.stderr)


def finish(args, errors: int = 0, skipped: int = 0, what: str = "row(s)") -> int:
    """The exit code of a command that ran: 3 (or 0 with --allow-errors) when anything errored or
    was skipped, with the counts printed."""
    if not errors and not skipped:
        return EXIT_OK
    allow = getattr(args, "allow_errors", False)
    counts = ", ".join(t for t in (f"{errors} {what} errored" if errors else "",
                                   f"{skipped} input file(s) skipped" if skipped else "") if t)
    print(f"{counts}: exit {EXIT_OK if allow else EXIT_INCOMPLETE}"
          f"{' (--allow-errors)' if allow else ' (--allow-errors to exit 0)'}", file=sys.stderr)
    return EXIT_OK if allow else EXIT_INCOMPLETE


def policy_hash(spec: str, policy, policy_every: int, inputs: str = "") -> str:
    """sha256 of what makes a policy's results: a checkpoint's bytes, or the source of a
    module:Class, or a built-in name and the drivesim version; how often it decides; and
    `inputs` (what else it is given: its constructor arguments, its cameras)."""
    every = getattr(policy, 'policy_every', None) or policy_every
    h = hashlib.sha256(f"{drivesim.__version__}\n{spec}\nevery {every}\n{inputs}\n".encode())
    path = Path(spec) if spec.endswith(".pt") else None
    if path is None and ":" in spec:
        try:
            path = Path(inspect.getsourcefile(type(policy)) or "")
        except TypeError:
            path = None
    if path is not None and path.is_file():
        h.update(path.read_bytes())
    return h.hexdigest()


def check_policies(specs: list[str], policies: list) -> None:
    """Each policy has a name that no other takes, and only the built-in expert is `pdm_expert`."""
    seen = {}
    for spec, p in zip(specs, policies):
        name = getattr(p, "name", None)
        if not isinstance(name, str) or not name:
            raise SystemExit(f"error: policy {spec!r} has no name (a policy needs a `name` string attribute)")
        if name == EXPERT_NAME and spec != EXPERT_NAME:
            raise SystemExit(f"error: policy {spec!r} is named {EXPERT_NAME!r}, the name of the reference expert "
                             "(its rows set every policy's progress reference); give it another `name`")
        if name in seen:
            raise SystemExit(f"error: policies {seen[name]!r} and {spec!r} are both named {name!r}; "
                             "their rows could not be told apart")
        seen[name] = spec


def make_policy(name: str, kwargs: dict | None = None):
    """`train.policies.make_policy`, its errors as the CLI's exit message."""
    from drivesim.train.policies import make_policy as make

    try:
        return make(name, kwargs)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def policy_args(text: str | None) -> dict | None:
    """--policy-args: a JSON object of constructor arguments for the user classes among --policies."""
    if not text:
        return None
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --policy-args must be a JSON object, e.g. '{{\"gap\": 2.0}}' ({exc})") from None
    if not isinstance(value, dict):
        raise SystemExit(f"error: --policy-args must be a JSON object, got {type(value).__name__}")
    return value


def add_camera_arguments(p, what: str) -> None:
    """--cameras / --rig / --camera-size / --refiner: the camera observations of render/cameras.py."""
    p.add_argument("--cameras", choices=["splat", "refined"], default=None,
                   help=f"camera observations for the policies ({what}): six Gaussian-splat cameras, or those refined "
                        "by the diffusion refiner; a policy reads them as obs.cameras (vector policies never render them)")
    p.add_argument("--rig", default="nuscenes", help="camera rig with --cameras: nuscenes | pandaset | a rig YAML")
    p.add_argument("--camera-size", default="112x64", help="WxH of each camera image with --cameras")
    p.add_argument("--refiner", default=None, help="with --cameras refined: the refiner checkpoint (default: policies/refiner)")


def camera_factory(args):
    """None, or a picklable zero-argument factory of the renderer --cameras names (checked here: a bad rig,
    size or refiner is an error before anything runs)."""
    if getattr(args, "cameras", None) is None:
        return None
    import functools

    from drivesim.core.config import ConfigError
    from drivesim.render.cameras import CameraConfig, make_cameras
    from drivesim.render.splat.sensors import parse_size

    try:
        cfg = CameraConfig(kind=args.cameras, rig=args.rig, size=parse_size(args.camera_size), refiner=args.refiner)
        make_cameras(cfg)
    except (ConfigError, ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    return functools.partial(make_cameras, cfg)


def load_scenarios(suite_path: str, limit: int | None = None):
    """`io.suite.load_suite_scenarios`, its errors as the CLI's exit message."""
    from drivesim.io.suite import SuiteError, load_suite_scenarios

    try:
        return load_suite_scenarios(suite_path, limit)
    except SuiteError as exc:
        raise SystemExit(f"error: {exc}") from None


def previous_results(out: Path, args) -> list[str]:
    """The results files already in `out`: an error unless --resume or --overwrite says what to do."""
    from drivesim.io.results import RESULTS_FILES

    found = [f for f in RESULTS_FILES if (out / f).exists()]
    if found and not (getattr(args, "resume", False) or getattr(args, "overwrite", False)):
        raise SystemExit(f"error: {out} already holds results ({', '.join(found)}) of an earlier run: --resume to "
                         "continue it (rows already complete are kept), --overwrite to replace them, or another -o")
    return found


def resumed_rows(out: Path, args, meta: dict, hashes: dict[str, str]) -> list[dict]:
    """With --resume, the complete rows of `out`/results.jsonl for the same suite, seed and policies."""
    from drivesim.io.results import ResumeError, read_rows, resumable

    path = out / "results.jsonl"
    if not getattr(args, "resume", False) or not path.exists():
        return []
    try:
        rows, notes = read_rows(path)
        kept = resumable(rows, path, meta.get("suite_hash") or meta.get("set_hash", ""), meta.get("seed"), hashes)
    except ResumeError as exc:
        raise SystemExit(f"error: {exc}") from None
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"resuming {path}: {len(kept)} complete row(s) kept, the rest runs")
    return kept


def add_results_arguments(parser: argparse.ArgumentParser) -> None:
    """--resume / --overwrite (what to do with the results of an earlier run in -o) and --allow-errors."""
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run whose results are in -o: keep its "
                       "complete rows (same suite hash, policy hashes and seed, else refused) and run the rest")
    again.add_argument("--overwrite", action="store_true", help="replace the results already in -o")
    add_allow_errors(parser)
