r"""Self-checks of chapter 3 (being written)."""

__all__: list[str] = []
