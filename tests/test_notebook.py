"""The Colab notebook runs top to bottom (SMOKE mode, CPU, the shared MNIST) and is stored clean."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import MNIST_NPZ, REPO

NOTEBOOK = REPO / "notebooks" / "tfresnet_colab.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def test_notebook_imports_the_package_instead_of_copying_it():
    source = "\n".join("".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"])
    assert "from tfresnet import training" in source and "TrainConfig(" in source
    assert "GradientTape" not in source and "def train_step" not in source


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("TFRESNET_SMOKE", "1")
    monkeypatch.setenv("TFRESNET_DATA_DIR", str(MNIST_NPZ.parent))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Epoch 1, Loss: " in outputs and "Test Accuracy: " in outputs
    assert "reloaded model gives the same logits: True" in outputs
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # learning curves and the prediction grid
