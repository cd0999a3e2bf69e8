"""A run that can be onboarded (a tiny reported factory model with a feature bank) and a site's
films as a .zip, for the Sites tests (tests/unit/test_sites.py, tests/app/test_sites_page.py); any
members as a .zip, for the Worklist's upload tests too."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from model.run_dir import read_metadata, write_metadata
from testkit.apptest import png_bytes
from testkit.model_factory import make_run_dir
from testkit.report_factory import write_reports
from testkit.synthetic_data import make_dataset, synthetic_xray


def banked_run(root: Path) -> Path:
    """A factory run with reports, a training config and a feature bank from synthetic data,
    as training.adapt needs it (built as tests/unit/test_site_adaptation.py builds its own)."""
    from training import feature_bank
    from training.config import TrainConfig

    data = make_dataset(root / "data", per_class=8, val_per_class=4)
    run_dir = write_reports(make_run_dir(root / "run"))
    write_metadata(run_dir, replace(read_metadata(run_dir), config=TrainConfig().to_dict()))
    if feature_bank.main(["--model", str(run_dir), "--data", str(data)]) != 0:
        raise RuntimeError("the feature bank was not written")
    return run_dir


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def site_zip(count: int, folder: str = "st-mary/NORMAL") -> bytes:
    """``count`` synthetic normals brighter than the training ones (a new site's look)."""
    rng = np.random.default_rng(3)
    return zip_of({f"{folder}/film_{index}.png": png_bytes(np.clip(
        synthetic_xray(3, rng, (70, 90)).astype(int) + 40, 0, 255).astype(np.uint8))
        for index in range(count)})
