"""No defense: the classifier as trained by the recipe."""

from __future__ import annotations


class NoDefense:
    """The baseline: one model, trained normally and attacked as it is."""

    name = "none"

    def describe(self) -> dict[str, object]:
        return {"defense": self.name}
