"""CLI commands (placeholder until its issue lands)."""


def register(app) -> None:
    pass
