"""`python -m replay_cli` runs the command line."""

from replay_cli.cli import cli

if __name__ == "__main__":
    cli(prog_name="replaycli")
