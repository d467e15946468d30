"""The shipped workflows: their names (the API twins', the ones `run` and the experiment take), their titles in
the template browser (the UI files' names) and the paper's prompt they carry."""
import os

from .paths import API_DIR, TEMPLATES_DIR

# The paper's fixed prompt, word for word, with "person" as <identity>: each generated face gets its own.
PROMPT = ("ID photo of <identity> wearing light-blue surgical cap and top, frontal headshot centered, even "
          "lighting, light-blue background, ultra-realistic, sharp focus")
PAPER_PROMPT = PROMPT.replace("<identity>", "person")
# The template browser titles a pack's templates by file name (frontend 1.32): the UI files are named
# by these titles; the API twins keep the short names the runner's command lines use.
TITLES = {"palsy_pf": "PalsySim PF - synthetic palsy face from a patient photo",
          "palsy_codc": "PalsySim CODC - patient organs on a donor face contour",
          "palsy_zero_shot": "PalsySim zero-shot baseline - stock Canny ControlNet",
          "palsy_yanagihara_grid": "PalsySim Yanagihara grid - ten items for each identity",
          "palsy_video": "PalsySim video - pseudo-palsy expression video"}


def api_path(name):
    return os.path.join(API_DIR, f"{name}.json")


def template_path(name, ext=".json"):
    return os.path.join(TEMPLATES_DIR, TITLES[name] + ext)
