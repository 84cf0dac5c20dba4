r"""Self-checks of chapter 2 (being written)."""

__all__: list[str] = []
