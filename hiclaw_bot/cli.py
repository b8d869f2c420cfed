"""Command-line entry point (filled in by the foundation)."""


def main() -> None:
    """Placeholder until the CLI lands."""
