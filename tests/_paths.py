"""Where tests find the repository, the shared data and the screenshot folder, wherever the test file lives."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED_DATA = ROOT.parent / "shared" / "data"  # ../shared/data (see its README)
ARTIFACTS = ROOT / "test-artifacts"  # browser screenshots
