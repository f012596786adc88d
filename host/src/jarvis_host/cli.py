"""The ``jarvis`` command: list the installed categories, run them.

Listing never imports an analysis engine, so ``jarvis categories`` and
``--help`` stay instant however many plugins are installed. User mistakes (bad
arguments, a bad config, an unknown category, a missing directory, two
plugins claiming a name) end with one message on stderr and exit code 4,
never a traceback; exit code 2 is kept for input data that breaks a
category's contract (see :mod:`~jarvis_host.exits`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

from jarvis_host import __version__, exits
from jarvis_host.category import SCOPES
from jarvis_host.config import CategorySettings, ConfigError, locate_config, settings_at
from jarvis_host.plugins import PluginConflictError, Registry, load_registry
from jarvis_host.runner import UsageError, report, resolve_scope, run_categories

USER_ERRORS = (ConfigError, PluginConflictError, UsageError)

EXIT_CODES_HELP = """exit codes:
  0    every category that ran is OK or NO_DATA (or was skipped)
  1    a category failed internally: a bug (JARVIS_DEBUG=1 prints its traceback)
  2    input data breaks a category's contract (ERROR)
  4    usage error: bad arguments, bad config, wrong output directory, unknown category
  130  interrupted (Ctrl-C)
  141  standard output closed early (e.g. | head)"""


class UsageParser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 4 (as pytest's do), not 2.

    Exit code 2 belongs to bad input data; a wrong call is another mistake.
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(exits.USAGE_ERROR, f"{self.prog}: error: {message}\n")


def describe_categories(registry: Registry, settings: Mapping[str, CategorySettings]) -> list[dict[str, Any]]:
    """The listing of ``jarvis categories``, as plain data.

    :param registry: the loaded plugins.
    :param settings: the resolved settings of each registered category.
    :return: one object per category, sorted by name, with the keys ``name``,
        ``plugin``, ``version``, ``enabled``, ``enabled_source``,
        ``description``, ``inputs``, ``output`` (the first output, the
        findings file), ``outputs`` and ``options``.
    """
    listing = []
    for name in sorted(registry.categories):
        category, setting = registry.categories[name], settings[name]
        listing.append({
            "name": name,
            "plugin": category.plugin,
            "version": category.version,
            "enabled": setting.enabled,
            "enabled_source": setting.enabled_source,
            "description": category.description,
            "inputs": list(category.inputs),
            "output": category.outputs[0] if category.outputs else None,
            "outputs": list(category.outputs),
            "options": dict(setting.options),
        })
    return listing


def format_listing(listing: Sequence[Mapping[str, Any]], registry: Registry) -> str:
    """Render the listing (and any broken plugins) for a terminal.

    :param listing: the output of :func:`describe_categories`.
    :param registry: the loaded plugins, for the broken ones.
    :return: the text, ending with a newline.
    """
    lines: list[str] = []
    for entry in listing:
        state = "enabled" if entry["enabled"] else "disabled"
        owner = f"{entry['plugin']} {entry['version']}".strip()
        lines.append(f"{entry['name']}  ({owner})  {state}, {entry['enabled_source']}")
        lines.append(f"    {entry['description']}")
        lines.append(f"    inputs:  {', '.join(entry['inputs']) or '-'}")
        lines.append(f"    outputs: {', '.join(entry['outputs']) or '-'}")
    if not listing:
        lines.append("No categories registered: no Jarvis plugin is installed or loaded.")
    if registry.broken:
        lines.append("")
        lines.append("Broken plugins (skipped):")
        for broken in registry.broken:
            owner = f"{broken.plugin.distribution} {broken.plugin.version}".strip()
            lines.append(f"    {owner} ({broken.plugin.entry_point}): {broken.error}")
    return "\n".join(lines) + "\n"


def _cmd_categories(args: argparse.Namespace) -> int:
    registry = load_registry()
    location = locate_config(args.config)
    listing = describe_categories(registry, settings_at(registry.categories, location))
    if args.json:
        # Broken plugins were already reported on stderr while loading; the
        # JSON stays an array of categories so scripts can rely on its shape.
        print(json.dumps(listing, indent=2))
    else:
        sys.stdout.write(location.describe() + "\n" + format_listing(listing, registry))
    return exits.OK


def _cmd_run(args: argparse.Namespace) -> int:
    registry = load_registry()
    location = locate_config(args.config)
    settings = settings_at(registry.categories, location)
    # Resolved once here, so the JSON summary reports the scope the run used.
    scope = resolve_scope(args.output_dir, args.comparison_scope)
    outcomes = run_categories(
        args.output_dir, registry.categories, settings,
        names=args.category, scope=scope, run_disabled=bool(args.category),
    )
    if not args.json:
        print(location.describe())
        return report(outcomes)
    summary = {
        "output_dir": str(args.output_dir),
        "config": {"path": None if location.path is None else str(location.path), "origin": location.origin},
        "comparison_scope": scope,
        "exit_code": report(outcomes, as_json=True),
        "categories": [outcome.as_json() for outcome in outcomes],
    }
    print(json.dumps(summary, indent=2))
    return summary["exit_code"]


def add_scope_option(parser: argparse.ArgumentParser) -> None:
    """``--comparison-scope``, shared with the per-category drop-in."""
    parser.add_argument("--comparison-scope", choices=SCOPES,
                        help="override the scope recorded in category_data/category_manifest.json")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config``, shared with the per-category drop-in."""
    parser.add_argument(
        "--config", type=Path, metavar="PATH",
        help="user config TOML (default: $JARVIS_CONFIG, else ./jarvis.toml when present)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jarvis`` and its subcommands.

    :return: the parser; each subcommand stores its handler in ``handler``.
    """
    parser = UsageParser(
        prog="jarvis",
        description="Run the analysis categories of the installed Jarvis plugins "
                    "over a trace-analysis output directory.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jarvis {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser(
        "categories", help="list the registered categories",
        description="List every registered category with its plugin, version, "
                    "enabled state, inputs and outputs, sorted by name.",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of text")
    add_config_option(listing)
    listing.set_defaults(handler=_cmd_categories)

    run = commands.add_parser(
        "run", help="run the enabled categories over an output directory",
        description="Run the enabled categories (or those named with --category, even when "
                    "the config disables them) over OUTPUT_DIR; print the config used, then one "
                    "status line per category and the files it wrote.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR",
                     help="analysis output directory written by the pipeline")
    run.add_argument("--category", action="append", metavar="NAME",
                     help="run only this category (repeat for several)")
    run.add_argument("--json", action="store_true",
                     help="print a JSON summary (config, scope, exit code, each category's status, "
                          "message, files written and warnings) instead of text")
    add_scope_option(run)
    add_config_option(run)
    run.set_defaults(handler=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jarvis`` console script.

    :param argv: arguments without the program name (default: ``sys.argv[1:]``).
    :return: the exit code (see :mod:`~jarvis_host.exits`).
    """
    return exits.run_quietly(lambda: _main(argv), "jarvis")


def console_main() -> NoReturn:
    """The ``jarvis`` console script: :func:`main` as a whole process (:func:`~jarvis_host.exits.run_process`)."""
    exits.run_process(main)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return exits.OK
    try:
        return args.handler(args)
    except USER_ERRORS as exc:
        print(f"jarvis: error: {exc}", file=sys.stderr)
        return exits.USAGE_ERROR


if __name__ == "__main__":
    console_main()
