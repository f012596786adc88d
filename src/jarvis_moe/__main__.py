"""``python -m jarvis_moe``: the drop-in for the pipeline's per-category script.

The pipeline calls one script per category with ``--output-dir``. This entry
point takes the same arguments and runs the category through the reference
host's runner (the ``jarvis-host`` distribution, installed with
``jarvis-moe[host]``), with the same config handling and exit codes as
``jarvis run``. The category is an explicit request, so it runs even when a
config disables it. The plugin itself (``jarvis_moe.plugin``) needs no host.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from jarvis_moe import __version__, plugin

try:
    from jarvis_host import exits
    from jarvis_host.cli import EXIT_CODES_HELP, USER_ERRORS, UsageParser, add_config_option, add_scope_option
    from jarvis_host.config import load_settings
    from jarvis_host.plugins import PluginInfo, load_registry
    from jarvis_host.runner import report, run_categories
except ModuleNotFoundError as missing:
    if not (missing.name or "").startswith("jarvis_host"):
        raise
    print("python -m jarvis_moe: error: this command runs through the reference host, which is not "
          "installed: pip install 'jarvis-moe[host]'", file=sys.stderr)
    raise SystemExit(4) from None  # the usage-error code of jarvis_host.exits

DISTRIBUTION = "jarvis-moe"
CATEGORIES = ("moe_fused", "moe_unfused")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m jarvis_moe``.

    :return: the parser.
    """
    parser = UsageParser(
        prog="python -m jarvis_moe",
        description="Analyse the MoE category of one trace-analysis output directory, "
                    "print its status and the files written.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR",
                        help="analysis output directory written by the pipeline")
    parser.add_argument("--category", choices=CATEGORIES, default=CATEGORIES[0],
                        help="category to analyse (default: %(default)s)")
    add_scope_option(parser)
    add_config_option(parser)
    parser.add_argument("--version", action="version", version=f"jarvis-moe {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one MoE category as the pipeline's per-category script would.

    :param argv: arguments without the program name (default: ``sys.argv[1:]``).
    :return: the exit code (see :mod:`jarvis_host.exits`).
    """
    return exits.run_quietly(lambda: _main(argv), "jarvis-moe")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Every installed plugin is loaded so the user config is checked
        # against the same categories as by ``jarvis run``; this plugin is
        # added even when not installed (a source checkout) or filtered out.
        registry = load_registry(extra_plugins=[
            (plugin, PluginInfo(DISTRIBUTION, __version__, "moe = jarvis_moe.plugin")),
        ])
        settings = load_settings(registry.categories, args.config)
        outcomes = run_categories(
            args.output_dir, registry.categories, settings,
            names=[args.category], scope=args.comparison_scope, run_disabled=True,
        )
    except USER_ERRORS as exc:
        print(f"jarvis-moe: error: {exc}", file=sys.stderr)
        return exits.USAGE_ERROR
    return report(outcomes, prog="jarvis-moe")


if __name__ == "__main__":
    exits.run_process(main)
