"""The shipped workflows by their API twins' names, and their titles in the template browser (the UI
files' names): test_workflows.py and test_workflows_browser.py."""
from palsysim.base.workflows import TITLES

__all__ = ["NAMES", "TITLES"]

NAMES = sorted(TITLES)
