"""Subcommands of this stage for ``pruneport`` (see ``pruneport.cli.PLUGIN_MODULES``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands; each parser sets ``func`` (args -> exit code) with ``set_defaults``."""
