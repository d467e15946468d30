"""The shipped workflows by their API twins' names, and their titles in the template browser (the UI
files' names, scripts/build_workflows.py's TITLES): test_workflows.py and test_workflows_browser.py."""
import os
import sys

from palsysim.base.paths import REPO  # the checkout under test

sys.path.insert(0, os.path.join(REPO, "scripts"))
from build_workflows import TITLES  # noqa: E402

__all__ = ["NAMES", "TITLES"]

NAMES = ["palsy_codc", "palsy_pf", "palsy_yanagihara_grid", "palsy_zero_shot"]
