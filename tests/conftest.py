import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real driving data (DRIVESIM_DATA, default ../shared/data); tests skip without it."""
    path = Path(os.environ.get("DRIVESIM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = path.resolve()  # relative DRIVESIM_DATA (as .ci/run sets it) must survive chdir and symlinks
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set DRIVESIM_DATA)")
    return path
