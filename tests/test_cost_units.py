"""The pure parts of cost tracking, at their edges: amounts, the budget, estimates with
unknown pricing, the cap's refusal for unpriced models, journals from before cost columns."""

from __future__ import annotations

import io
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

import oxedit
from oxedit._bulk.cost import Budget, Estimate, ModelEstimate, Spending, money, to_amount
from oxedit._bulk.journal import Journal
from oxedit._cli.estimate_view import print_estimate
from oxedit._models import Model
from oxedit._resources.history import to_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.03", Decimal("0.03")),
        (" 1.5 ", Decimal("1.5")),
        (0.025, Decimal("0.025")),
        (2, Decimal(2)),
        (Decimal("0.1"), Decimal("0.1")),
        ("0", Decimal(0)),
        ("-0.01", None),
        ("NaN", None),
        ("Infinity", None),
        (float("inf"), None),
        ("abc", None),
        ("", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_to_decimal(value: object, expected: Decimal | None) -> None:
    assert to_decimal(value) == expected


def test_to_amount_names_the_bad_value() -> None:
    assert to_amount(None, "max_cost") is None
    assert to_amount("0.5", "max_cost") == Decimal("0.5")
    with pytest.raises(oxedit.InvalidRequestError, match=r"--max-cost='5\$'"):
        to_amount("5$", "--max-cost")


def test_money() -> None:
    assert money(Decimal("0.03")) == "$0.0300"
    assert money(Decimal(1234)) == "$1,234.0000"
    assert money(None) == "unknown"


def test_budget_fits_up_to_the_cap_and_settles_to_actual() -> None:
    budget = Budget(Decimal("0.10"), spent=Decimal("0.04"))
    assert budget.fits(Decimal("0.06")) and not budget.fits(Decimal("0.0600001"))
    budget.charge(Decimal("0.06"))
    assert not budget.fits(Decimal("0.01"))
    budget.settle(Decimal("0.06"), Decimal(0))  # refused: nothing billed
    assert budget.spent == Decimal("0.04")
    budget.charge(Decimal("0.03"))
    budget.settle(Decimal("0.03"), Decimal("0.05"))  # billed more than estimated
    assert budget.spent == Decimal("0.09")


def test_an_estimate_with_unknown_pricing_has_no_total_unless_a_price_is_assumed() -> None:
    models = {
        "a": ModelEstimate("a", 2, 3, "per_image", Decimal("0.03")),
        "t": ModelEstimate("t", 1, 2, "time", None),
    }
    estimate = Estimate(items=3, generations=5, models=models)
    assert estimate.unknown == ["t"] and estimate.cost is None
    assert estimate.known_cost == Decimal("0.09")
    assumed = Estimate(items=3, generations=5, models=models, unknown_cost=Decimal("0.5"))
    assert assumed.cost == Decimal("1.09")
    assert Estimate(items=0, generations=0, models={}).cost == 0


class _Models:
    """Stands in for the client: a model priced per image, and one priced by time."""

    async def model(self, model_id: str) -> Model:
        if model_id == "timed":
            return Model(id=model_id, pricing={"method": "time", "cost_per_second": 0.01})
        return Model(id=model_id, pricing={"method": "per_image", "cost_per_image": 0.03})


@pytest.mark.anyio
async def test_the_cap_refuses_unpriced_models_unless_a_price_is_assumed() -> None:
    timed = oxedit.EditRequest(image="a.png", prompt="p", model="timed")
    priced = oxedit.EditRequest(image="a.png", prompt="p", params={"num_generations": 2})
    spending = Spending(_Models(), None, max_cost=Decimal(1), unknown_cost=None)  # type: ignore[arg-type]
    spending.start(Decimal(0))
    with pytest.raises(oxedit.InvalidRequestError, match="'timed'.*unknown_cost"):
        await spending.check_all([priced, timed])
    assert spending.admit(0, timed, (await spending.estimate(timed))[0]) is not None

    assumed = Spending(_Models(), None, max_cost=Decimal(1), unknown_cost=Decimal("0.2"))  # type: ignore[arg-type]
    assumed.start(Decimal("0.3"))
    assert await assumed.estimate(timed) == (Decimal("0.2"), False)
    assert await assumed.estimate(priced) == (Decimal("0.06"), True)
    await assumed.check_all([priced, timed])  # 0.3 + 0.06 + 0.2 fits in 1
    with pytest.raises(oxedit.InvalidRequestError, match=r"\$1\.1000.*\$0\.3000 of it spent"):
        await assumed.check_all([priced] * 10 + [timed])


def test_a_journal_from_before_cost_columns_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE items (key TEXT PRIMARY KEY, request TEXT NOT NULL, state TEXT NOT NULL,"
        " generation_id TEXT, sent_at REAL, error TEXT, output TEXT, updated_at REAL NOT NULL);"
        "INSERT INTO items VALUES ('k', '{}', 'succeeded', 'g1', 1.0, NULL, 'o.png', 2.0);"
    )
    db.commit()
    db.close()
    with Journal(path) as journal:
        (entry,) = journal.entries()
        assert (entry.generation_ids, entry.output_paths) == (["g1"], ["o.png"])
        assert entry.cost is None and journal.spent() == 0
        journal.costed("k", Decimal("0.03"))
        journal.enqueued("k", "g1", "g2")
        assert journal.claimed_ids() == {"g1", "g2"} and journal.spent() == Decimal("0.03")


def test_the_dry_run_table_says_unknown_and_what_an_assumed_price_gives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = {
        "a": ModelEstimate("a", 1, 2, "per_image", Decimal("0.03")),
        "t": ModelEstimate("t", 1, 1, "time", None),
    }
    err = Console(file=io.StringIO())
    assert print_estimate(err, Estimate(items=2, generations=3, models=models)) == 0
    lines = [
        " ".join(line.replace("│", " ").split()) for line in capsys.readouterr().out.splitlines()
    ]
    assert "t 1 1 unknown unknown" in lines
    assert "total 2 3 $0.0600 + unknown" in lines
    assert any(line.startswith("unknown pricing: t (no per-image price)") for line in lines)
    assumed = Estimate(items=2, generations=3, models=models, unknown_cost=Decimal("0.1"))
    errors = [(5, "m.jsonl line 6: bad")]
    bad = Estimate(
        items=2, generations=3, models=models, unknown_cost=Decimal("0.1"), errors=errors
    )
    assert print_estimate(err, assumed) == 0 and print_estimate(err, bad) == 1
    out = capsys.readouterr().out
    assert "$0.1000 (assumed)" in out and "$0.1600" in out
    assert "error: m.jsonl line 6: bad" in err.file.getvalue()  # type: ignore[attr-defined]


class _Flaky:
    async def model(self, model_id: str) -> Model:
        raise oxedit.ServerError("model: Service unavailable (HTTP 503)", status_code=503)


@pytest.mark.anyio
async def test_pricing_that_cannot_be_read_is_said_so_not_called_unknown() -> None:
    request = oxedit.EditRequest(image="a.png", prompt="p")
    capped = Spending(_Flaky(), None, max_cost=Decimal(1), unknown_cost=None)  # type: ignore[arg-type]
    capped.start(Decimal(0))
    with pytest.raises(oxedit.ServerError, match="Service unavailable"):
        await capped.check_all([request])
    amount, reason = await capped.charge(3, request)
    assert amount is None and reason is not None
    assert "item 3" in reason and "could not be read" in reason and "HTTP 503" in reason
    uncapped = Spending(_Flaky(), None, max_cost=None, unknown_cost=None)  # type: ignore[arg-type]
    assert await uncapped.charge(0, request) == (None, None)  # no cap: just no estimate
