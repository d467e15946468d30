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
# The stock ControlNet (zero-shot, and what fine-tuning starts from) and the fine-tuned one the PF and CODC
# templates load: the file README's "Fine-tuning the ControlNet" line writes (default --mode partial, so
# the file records the window 500..700), made by TRAIN_COMMAND, run in the pack's folder with the models
# folder of the ComfyUI as models/.
STOCK_CONTROLNET = "control_sd15_canny.pth"
TRAINED_CONTROLNET = "palsy_partial.safetensors"
TRAINED_WINDOW = (500, 700)
TRAIN_COMMAND = ("python -m training --checkpoint models/checkpoints/v1-5-pruned-emaonly.safetensors "
                 f"--controlnet models/controlnet/{STOCK_CONTROLNET} --data DATA "
                 f"--out models/controlnet/{TRAINED_CONTROLNET}")


def api_path(name):
    return os.path.join(API_DIR, f"{name}.json")


def template_path(name, ext=".json"):
    return os.path.join(TEMPLATES_DIR, TITLES[name] + ext)
