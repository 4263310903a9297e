"""The command's help: fast, complete and consistent."""

import argparse
import subprocess
import sys
import time

import pytest

from drivesim.cli import COMMANDS, build_parser, overview_parser  # noqa: F401 - overview_parser re-exported


def parsers(parser, path=("drivesim",)):
    """(path, parser) for the parser and every sub-parser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_top_level_help_is_fast_and_imports_no_torch():
    code = ("import sys, time; t = time.perf_counter()\n"
            "from drivesim.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', time.perf_counter() - t)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    total = time.perf_counter() - t0
    assert out[-2] == "NOTORCH" and "evaluate" in " ".join(out)
    assert total < 3.0  # interpreter start included; measured 0.15 s here (the bar: under 1 s)


def test_the_overview_lists_what_the_full_parser_has():
    full = {name: sub for path, sub in parsers(build_parser()) if len(path) == 2 for name in [path[1]]}
    assert list(full) == list(COMMANDS)
    sub = next(a for a in overview_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)


def test_every_option_is_explained_and_shows_its_default():
    missing, no_default = [], []
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            where = f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                missing.append(where)
            elif action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                shown = parser.formatter_class(prog="x")._get_help_string(action)
                if "default" not in shown.lower():
                    no_default.append(where)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose default is not shown: {no_default}"


def test_mine_help_names_policies_the_cli_accepts(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["mine", "--help"])
    text = capsys.readouterr().out
    assert "(expert," not in text and "pdm_expert" in text


@pytest.mark.slow
def test_refiner_render_reports_the_length_of_the_video_it_wrote(tmp_path, capsys):
    """It printed its own run time as '(5.0 s)' beside a 1.1 s video."""
    import imageio.v3 as iio

    from drivesim.cli import main

    assert main(["refiner", "render", "--map", "straight", "--steps", "11", "--render-size", "32x16",
                 "-o", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    video = next(tmp_path.glob("*.mp4"))
    frames = iio.improps(video).shape[0]
    assert f"{frames} frames, {frames * 0.1:.1f} s of video" in line and "rendered in" in line


def test_train_rl_says_when_no_episode_finished():
    """It printed 'return nan, success nan%'."""
    from drivesim.cli.train import last_fifth_summary

    nan = float("nan")
    none = last_fifth_summary({"episode_return": nan, "success_rate": nan, "collision_rate": nan, "kl_il": 0.01})
    assert "nan" not in none and "no episode finished" in none and "KL to IL 0.010" in none
    some = last_fifth_summary({"episode_return": 3.0, "success_rate": 0.5, "collision_rate": 0.25, "kl_il": 0.01})
    assert "return 3.0, success 50.0%, collision 25.0%" in some
