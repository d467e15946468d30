"""PalsyTimestepWindowControlNetLoader: a ControlNet that runs only where it was trained (or everywhere).

The window is put into ComfyUI's own step test: ControlNetApplyAdvanced copies the CONTROL_NET
and gives the copy its (start_percent, end_percent); WindowControlNet narrows that pair to the
window, so ControlNet.get_control skips the steps outside it exactly as it skips steps outside
a user's range. In window_then_base a base ControlNet, holding the user's own range, takes the
steps that the window test rejects. A percent range maps to sigmas the same way for every sampler,
scheduler and step count, so the loader needs none of them.

PalsyWindowSteps says which steps of a run fell in the window: the net and its copies share a
RunRecord, into which the sampling writes the sigmas the sampler passes to the ControlNet.
WindowControlNet, ComfyUI's ControlNet subclassed, is in comfy_internals.py with the pack's other uses of
ComfyUI internals.
"""
import folder_paths
import torch
from comfy_api.latest import io

from ..palsysim.controlnet.file import (CONTROL_PREFIX, check_complete, check_lora_base, is_lora,
                                        load_controlnet_weights, load_lora_factors, merge_lora, read_window,
                                        resolve_window)
from ..palsysim.controlnet.schedule import describe_window, window_percents
from .comfy_internals import WindowControlNet, control_weights, is_controlnet, load_controlnet_state_dict
from .common import InputError, Node, _one, model_file, output

MODES = ["everywhere", "window_only", "window_then_base"]
NO_BASE = "(none)"
NO_WINDOW = "no training window in the file (stock ControlNet); applied at every step"
DISCLOSURE = "Synthetic face made by PalsySim: SD1.5 + "


def method_summary(meta, t_lo, t_hi, apply, lora_base):
    """What the saved images say made them, from what was loaded (no file names)."""
    if meta is None and t_lo is None:
        return DISCLOSURE + "stock ControlNet, zero-shot (no fine-tuning)."
    how = f"fine-tuned ({meta.get('mode', 'mode not recorded')})" if meta else "ControlNet without training metadata,"
    lora = ", as a LoRA" if lora_base else ""
    return DISCLOSURE + f"ControlNet {how}{lora}, window timesteps {t_lo}..{t_hi}, applied {apply.replace('_', ' ')}."


class RunRecord:
    """What the loader loaded, and the sigmas of the last sampling that used its net (or a copy of it)."""

    def __init__(self, name, window, apply, trained):
        self.name, self.window, self.apply, self.trained = name, window, apply, trained  # window: (t_lo, t_hi) or None
        self.sigmas = None  # the sampler's M + 1 sigmas (transformer_options["sample_sigmas"]), as floats
        self.seen = []      # else the distinct sigmas the ControlNet was called at, in order

    def start(self):
        self.sigmas, self.seen = None, []

    def note(self, sigma, sample_sigmas):
        """A ControlNet call at `sigma` (float); sample_sigmas: the run's sigmas when the sampler passes them."""
        if self.sigmas is None:
            if sample_sigmas is not None:
                self.sigmas = [float(x) for x in torch.as_tensor(sample_sigmas).reshape(-1).tolist()]
            elif not self.seen or self.seen[-1] != sigma:
                self.seen.append(sigma)

    def run_sigmas(self):
        """The run's M + 1 sigmas (the last the end point), or None when no sampling used the net."""
        if self.sigmas is not None:
            return self.sigmas
        return self.seen + [0.0] if self.seen else None


def comfy_controlnet(weights, what, **options):
    """ComfyUI's ControlNet built from `weights` (as load_controlnet_weights gives them); an InputError
    naming `what` when ComfyUI cannot build one or the weights leave part of it unset."""
    ldm_keys = "controlnet_cond_embedding.conv_in.weight" not in weights
    keys = list(weights)  # ComfyUI's loader pops the diffusers keys it converts
    try:
        net = load_controlnet_state_dict(weights, options)
    except Exception as e:  # a partial net fails deep in ComfyUI's detection: 'NoneType' has no attribute ..., a key,
        # a shape, an assert ("You forgot to include the dimension of your cross-attention conditioning")
        raise InputError(f"{what}: ComfyUI could not build a ControlNet from it ({type(e).__name__}: {e}); it is "
                         f"incomplete or not an SD1.5 ControlNet: copy the original file again") from None
    if not is_controlnet(net):
        raise InputError(f"{what}: ComfyUI did not recognise a ControlNet in it (got {type(net).__name__}); "
                         f"choose an SD1.5 ControlNet file")
    if ldm_keys:  # ComfyUI loads a net with missing weights (left at random) and only logs it
        check_complete(what, keys, control_weights(net))
    return net


def load_sd15_controlnet(name):
    """models/controlnet/<name> -> comfy ControlNet, read weights-only; diffusers keys converted by ComfyUI."""
    return comfy_controlnet(load_controlnet_weights(model_file("controlnet", name, "control_net_name")), name)


def load_lora_controlnet(name, base_name, meta):
    """A LoRA file (models/controlnet/<name>) merged into a copy of its base ControlNet's weights.

    The same merge_lora as training's merged file, on the base weights as training read them, so the
    result is the net the merged file holds.
    """
    factors = load_lora_factors(model_file("controlnet", name, "control_net_name"))
    base = load_controlnet_weights(model_file("controlnet", base_name, "base_control_net_name"))
    if not any(k.startswith(CONTROL_PREFIX) for k in base):  # diffusers keys: ComfyUI converts them, as in training
        base = control_weights(comfy_controlnet(base, base_name, dtype=torch.float32))
    check_lora_base(meta, base, name, base_name)
    try:
        merged = merge_lora(base, factors)
    except ValueError as e:
        raise InputError(f"{name} (LoRA) on base {base_name}: {e}") from None
    return comfy_controlnet(merged, f"{name} on base {base_name}")


def controlnet_file_problem(name, input_name):
    """None if models/controlnet holds `name`, else the message naming file and folder."""
    try:
        model_file("controlnet", name, input_name)
    except InputError as e:
        return str(e)
    return None


def base_problem(name):
    """None if base_control_net_name is (none) or a file of models/controlnet, else why not."""
    return None if name == NO_BASE else controlnet_file_problem(name, "base_control_net_name")


def lora_base_name(name, meta, chosen):
    """The base ControlNet a LoRA file merges into: the one chosen, else the file its metadata names."""
    if chosen != NO_BASE:
        return chosen
    wanted = meta.get("base_controlnet") or "(not recorded)"
    if wanted in folder_paths.get_filename_list("controlnet"):
        return wanted
    raise InputError(f"{name}: is a LoRA file: it holds only changes to the base ControlNet {wanted!r}, which is not "
                     f"in ComfyUI/models/controlnet/. Put {wanted} there (or pick your copy of it as "
                     f"base_control_net_name), or load the merged file training writes instead")


class TimestepWindowControlNetLoader(Node):
    @classmethod
    def define_schema(cls):
        names = folder_paths.get_filename_list("controlnet")
        return io.Schema(
            node_id="PalsyTimestepWindowControlNetLoader",
            display_name="Load Timestep-Window ControlNet",
            category="PalsySim",
            description="Loads an SD1.5 ControlNet with the timestep window it was fine-tuned on (500..700 = "
                        "sampling percent 0.29930..0.49950: about 4 of 20 steps) and applies it everywhere, only "
                        "in the window, or in the window with a base ControlNet elsewhere. Connect it to Apply "
                        "ControlNet (Advanced); its start/end percent still apply on top. A LoRA file from training "
                        "(--lora-format lora) is merged into its base ControlNet (base_control_net_name) here. "
                        "The window needs no sampler setting; ControlNet Window Steps says which steps of a run "
                        "fell in it.",
            inputs=[
                io.Combo.Input("control_net_name", options=names, tooltip="From models/controlnet."),
                io.Combo.Input("apply", options=MODES, default="everywhere",
                               tooltip="everywhere: at every step (the paper). window_only: only on steps whose "
                                       "timestep lies in the window. window_then_base: the window net in the "
                                       "window, base_control_net_name on the other steps."),
                io.Int.Input("t_lo", default=-1, min=-1, max=999, tooltip="First timestep of the window; -1 = from the file."),
                io.Int.Input("t_hi", default=-1, min=-1, max=999, tooltip="Last timestep of the window; -1 = from the file."),
                io.Combo.Input("base_control_net_name", options=[NO_BASE] + names, default=NO_BASE,
                               tooltip="The base ControlNet (e.g. control_sd15_canny): for a LoRA file, the net its "
                                       "changes merge into ((none) = the file name the LoRA records); for "
                                       "window_then_base, the net on the steps outside the window."),
            ],
            outputs=[output(io.ControlNet, "control_net"),
                     output(io.String, "report", tooltip="The window and its percent pair, as loaded (ControlNet "
                                                         "Window Steps adds the steps of a run)."),
                     output(io.String, "summary", tooltip="The method as loaded (file mode and window, or stock "
                                                          "zero-shot), for the anonymized save's method_summary.")],
        )

    @classmethod
    def validate_inputs(cls, **inputs):
        t_lo, t_hi = inputs.get("t_lo"), inputs.get("t_hi")
        if isinstance(t_lo, int) and isinstance(t_hi, int) and 0 <= t_hi < t_lo <= 999:
            return f"t_lo={t_lo} is above t_hi={t_hi}: swap them (the paper's window is 500..700)"
        return super().validate_inputs(**inputs)

    @classmethod
    def own_checks(cls, inputs):
        return {"base_control_net_name": base_problem,
                "control_net_name": lambda name: controlnet_file_problem(name, "control_net_name")}

    @classmethod
    def execute(cls, control_net_name, apply, t_lo, t_hi, base_control_net_name) -> io.NodeOutput:
        # Checked again here: a null in the prompt reaches execute without validation (it reads as a link).
        path = model_file("controlnet", control_net_name, "control_net_name")
        problem = base_problem(base_control_net_name)
        if problem:
            raise InputError(problem)
        if apply == "everywhere" and t_lo < 0 and t_hi < 0 and read_window(path) is None:
            # A stock ControlNet (no window in it) applied at every step needs no window.
            record = RunRecord(control_net_name, None, apply, "")
            return io.NodeOutput(WindowControlNet.wrap(load_sd15_controlnet(control_net_name), None, None, record),
                                 f"{control_net_name}: {NO_WINDOW}", method_summary(None, None, None, apply, None))
        t_lo, t_hi, meta = resolve_window(path, t_lo, t_hi)
        lora_base = lora_base_name(control_net_name, meta, base_control_net_name) if is_lora(meta) else None
        outside = base_control_net_name if base_control_net_name != NO_BASE else lora_base
        if apply == "window_then_base" and outside is None:
            raise InputError("apply=window_then_base needs base_control_net_name: pick the ControlNet for the "
                             "steps outside the window (e.g. the original control_sd15_canny)")
        net = load_lora_controlnet(control_net_name, lora_base, meta) if lora_base else load_sd15_controlnet(control_net_name)
        base = load_sd15_controlnet(outside) if apply == "window_then_base" else None
        trained = f"; trained: {meta.get('mode', '?')}" if meta else ""
        trained += f"; LoRA merged into {lora_base}" if lora_base else ""
        record = RunRecord(control_net_name, (t_lo, t_hi), apply, trained)
        net = WindowControlNet.wrap(net, None if apply == "everywhere" else window_percents(t_lo, t_hi), base, record)
        return io.NodeOutput(net, f"{control_net_name}: {describe_window(t_lo, t_hi)}; apply: {apply}{trained}",
                             method_summary(meta, t_lo, t_hi, apply, lora_base))


WHERE_IT_RAN = {"everywhere": "the net ran at every step",
                "window_only": "the net ran on those steps only",
                "window_then_base": "the net ran on those steps, the base ControlNet on the others"}


def steps_report(record):
    """What a run did with the loader's net: which of its steps fell in the window (from the run's sigmas)."""
    sigmas = record.run_sigmas()
    if sigmas is None:
        return (f"{record.name}: no sampling used this ControlNet (Apply ControlNet bypassed, at strength 0, or "
                f"not between this loader and the sampler): no steps to report")
    steps = len(sigmas) - 1
    if record.window is None:
        return f"{record.name}: {NO_WINDOW}; this run: {steps} steps"
    window = describe_window(*record.window, sigmas, "this run")
    return f"{record.name}: {window}; apply: {record.apply}, {WHERE_IT_RAN[record.apply]}{record.trained}"


class WindowSteps(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyWindowSteps",
            display_name="ControlNet Window Steps (from the run)",
            category="PalsySim",
            description="Says which sampling steps fell in the timestep window of the net Load Timestep-Window "
                        "ControlNet loaded, from the sigmas the sampler passed to that ControlNet in the run "
                        "itself: right for any sampler, scheduler, step count or denoise, with nothing to keep in "
                        "step with the sampler.",
            inputs=[
                io.ControlNet.Input("control_net", tooltip="The control_net output of Load Timestep-Window "
                                                           "ControlNet (the one the sampling used)."),
                io.Latent.Input("samples", tooltip="The sampler's LATENT output: only so this runs after the "
                                                   "sampling; not read."),
            ],
            outputs=[output(io.String, "report", tooltip="The window, its percents and which of the run's steps "
                                                         "fell in it.")],
            is_input_list=True,  # one report for a sampler that ran once per identity
        )

    @classmethod
    def validate_inputs(cls, **inputs):
        return super().validate_inputs(**{k: _one(v) for k, v in inputs.items()})

    @classmethod
    def execute(cls, control_net, samples) -> io.NodeOutput:
        record = getattr(control_net[0], "record", None)
        if record is None:
            return io.NodeOutput("control_net is not from Load Timestep-Window ControlNet: connect that loader's "
                                 "control_net output (the one Apply ControlNet takes) to see the steps")
        return io.NodeOutput(steps_report(record))
