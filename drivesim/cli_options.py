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
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".drivesim-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise SystemExit(f"error: output folder {path}: a file of that name (or above it) is in the way") from None
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


def policy_hash(spec: str, policy, policy_every: int) -> str:
    """sha256 of what makes a policy's results: a checkpoint's bytes, or the source of a
    module:Class, or a built-in name and the drivesim version; and how often it decides."""
    h = hashlib.sha256(f"{drivesim.__version__}\n{spec}\nevery {getattr(policy, 'policy_every', None) or policy_every}\n".encode())
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
