"""examples/notebook.ipynb runs in a real Jupyter kernel (nbclient + ipykernel) without a cell
error, and shows its images inline; the copy in the repository keeps them in its outputs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).parent.parent / "examples"
NOTEBOOK = EXAMPLES / "notebook.ipynb"


def outputs(notebook: Any) -> list[Any]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def check_shows_images(notebook: Any) -> None:
    shown = outputs(notebook)
    assert not [out for out in shown if out.output_type == "error"]
    pictures = [out for out in shown if "image/png" in out.get("data", {})]
    assert len(pictures) == 2  # the async client's `gen.show()` and the sync client's `gen`
    html = "".join(out.get("data", {}).get("text/html", "") for out in shown)
    assert html.count("data:image/jpeg;base64,") == 16  # 8 inputs and 8 outputs
    assert "8/8" in html and "8 succeeded" in html  # the batch's bar, then its grid


def test_the_saved_notebook_holds_its_images() -> None:
    saved = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    check_shows_images(saved)


@pytest.mark.slow
def test_the_notebook_runs_in_a_real_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's path migration warning
    shutil.copytree(EXAMPLES / "images", tmp_path / "images")
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # CellExecutionError on any cell's error
    check_shows_images(notebook)
    assert len(list((tmp_path / "notebook-out").glob("*.png"))) == 8
