"""The shipped workflows by their API twins' names, and their titles in the template browser (the UI
files' names): test_workflows.py and test_workflows_browser.py. readme_templates(): what README's table
says of each."""
import os
import re

from palsysim.base.paths import REPO
from palsysim.base.workflows import TITLES

__all__ = ["NAMES", "TITLES", "readme_templates"]

NAMES = sorted(TITLES)


def readme_templates():
    """{API twin name: (nodes, Fit View %)} from README's table of the templates."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    rows = re.findall(r"^\| PalsySim .* \| `(\w+)` \| (\d+) \| (\d+)% \|$", text, flags=re.M)
    return {name: (int(nodes), int(fit)) for name, nodes, fit in rows}
