#!/usr/bin/env python3
"""Same as `medlora prepare` (kept under the name the original design note uses). Run with --help for the flags."""

from medlora.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("prepare")
