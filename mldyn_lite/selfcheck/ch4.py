r"""Self-checks of chapter 4 (being written)."""

__all__: list[str] = []
