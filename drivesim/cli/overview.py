"""What `drivesim --help` shows, without importing torch or any command module: the command
names and their one-line help (`COMMANDS`, which the full parser of commands.py uses too), the
global options, and the help formatter of every parser."""

from __future__ import annotations

import argparse

DESCRIPTION = ("drivesim: closed-loop driving simulation. Evaluate policies on scenario suites and real logs, generate\n"
               "rare events, train policies by imitation and RL, render cameras. Run `drivesim COMMAND --help` for the\n"
               "options of each command.")
COMMANDS = {  # name: one-line help, in the order `drivesim --help` lists them
    "simulate": "run one scenario in closed loop: metrics + BEV (or camera) video",
    "evaluate": "evaluate policies on a suite or real logs: tables, summary, HTML report, failure videos",
    "import": "real driving logs -> drivesim scenario files (with content hashes)",
    "realism": "WOSAC-style realism of traffic models against real logs",
    "train": "train the learned traffic model (traffic) or a driving policy (il, then rl)",
    "report": "results reports (training: the IL -> RL pipeline and its WorldEngine-style table)",
    "bench": "closed-loop throughput against highway-env (tools/bench_sim.py)",
    "generate": "rare-event scenario set: cut-in, hard brake, stalled car, merge, pedestrian",
    "mine": "find a policy's failures on a suite and generate variations around them",
    "reconstruct": "fit a Gaussian splat scene to real camera images (PandaSet)",
    "refiner": "the action-conditioned diffusion refiner on top of the splat render",
    "demo": "the main job: the nominal suite and a generated cut-in suite x the built-in policies and the shipped "
            "IL/RL checkpoints -> tables, reports, videos",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and every option's default after its help (unless the help
    already says it, or there is none to say: None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_global_options(p: argparse.ArgumentParser, version: str) -> None:
    p.add_argument("--version", action="version", version=f"drivesim {version}")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where the batched simulation runs")


def overview_parser() -> argparse.ArgumentParser:
    """The top-level parser with the command names only (for `drivesim --help`)."""
    from drivesim import __version__

    p = argparse.ArgumentParser(prog="drivesim", description=DESCRIPTION, formatter_class=HelpFormatter)
    add_global_options(p, __version__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text)
    return p
