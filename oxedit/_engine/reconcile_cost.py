"""Which requests reconcile a set of pending ids for the fewest bytes: pure, so its edges are
tested directly.

Rows echo every request parameter, input images included: with data URIs a row is megabytes,
with hosted inputs about a kilobyte. Per-id GETs cost one row (plus a request) each. One list of
a namespace costs every active row of that namespace, ours that are not due and other
processes' included, and spares the GETs only of the ids still active. So the list is chosen
only when its rows cost less than the GETs it spares, as learned from the rows seen so far.
"""

from __future__ import annotations

from .. import _constants as C

__all__ = ["ReconcileCost"]

_WEIGHT = 0.3  # of a new observation in the running averages


class ReconcileCost:
    """Running averages of what reconciliation requests cost, and the choice they imply."""

    def __init__(
        self,
        *,
        request_bytes: int = C.REQUEST_OVERHEAD_BYTES,
        row_bytes: float = C.ROW_BYTES_GUESS,
        active_share: float = C.ACTIVE_SHARE_GUESS,
    ) -> None:
        self.request_bytes = request_bytes
        self.row_bytes = row_bytes  # bytes per row, averaged over lists and GETs
        self.active_share = active_share  # of checked ids, the share found still active
        self._listed: dict[str | None, int] = {}  # rows in the last list of each namespace

    def use_list(self, namespace: str | None, ids: int, pending: int) -> bool:
        """Whether one list of `namespace` is cheaper than `ids` GETs, with `pending` jobs of
        ours in that namespace (the list has at least those still active)."""
        if ids <= 1:
            return False
        rows = max(self._listed.get(namespace, 0), round(pending * self.active_share))
        list_cost = self.request_bytes + rows * self.row_bytes
        spared = ids * self.active_share * (self.request_bytes + self.row_bytes)
        return list_cost < spared

    def listed(self, namespace: str | None, rows: int, nbytes: int) -> None:
        """A list of `namespace` returned `rows` rows in `nbytes` bytes."""
        self._listed[namespace] = rows
        if rows:
            self._row(nbytes / rows)

    def fetched(self, rows: int, nbytes: int) -> None:
        """`rows` per-id GETs returned `nbytes` bytes in all."""
        if rows:
            self._row(nbytes / rows)

    def found_active(self, checked: int, active: int) -> None:
        """Of `checked` ids looked up, `active` were still queued or processing."""
        if checked:
            self.active_share += _WEIGHT * (active / checked - self.active_share)

    def _row(self, size: float) -> None:
        self.row_bytes += _WEIGHT * (size - self.row_bytes)
