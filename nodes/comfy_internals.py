"""Every use the pack makes of ComfyUI beyond its public surface (comfy_api, folder_paths, node classes and
the documented loader functions), in this one module: a ComfyUI release that changes one of them is fixed
here, and tests/test_pack_surface.py fails if another node module imports a ComfyUI internal.

What is used, and why:
- comfy.controlnet.ControlNet, subclassed as WindowControlNet (the timestep-window loader's net). Its
  constructor keywords (global_average_pooling, load_device, manual_cast_dtype), its control_model and
  control_model_wrapped attributes and copy_to make a copy that shares the loaded model; the methods core
  Apply ControlNet and the sampler call are overridden: copy, set_cond_hint (the window narrows the Apply
  node's percent pair), set_previous_controlnet, pre_run (its percent_to_timestep_function gives the
  window's sigmas), get_control(x_noisy, t, cond, batched_number, transformer_options) (the base net takes
  the steps outside the window), cleanup and get_models. Core nodes alone give the same images for
  everywhere and window_only, and for window_then_base except on a step exactly on a window edge
  (tests/test_controlnet_window_core.py); they cannot read the window from the file, merge a LoRA file or
  report a run's steps.
- transformer_options["sample_sigmas"] in get_control: the run's sigmas, for ControlNet Window Steps.
- comfy.controlnet.load_controlnet_state_dict and a net's control_model.state_dict(): the loader reads
  weights itself (weights-only, merged with a LoRA file) and checks that they set the whole net.
- comfy.utils.ProgressBar: progress in batch loops, and the point where a cancelled prompt stops.
- comfy_execution.graph_utils.ExecutionBlocker: the privacy gate's held-back images block what follows.
- ModelPatcher.clone and set_model_attn1_patch: cross-frame attention for video frames.
- server.PromptServer.instance.routes: the route the headless runner deletes its uploads through.
"""
import comfy.controlnet
from comfy.utils import ProgressBar
from comfy_execution.graph_utils import ExecutionBlocker

__all__ = ["ExecutionBlocker", "ProgressBar", "WindowControlNet", "add_post_route", "control_weights",
           "is_controlnet", "load_controlnet_state_dict", "with_attn1_patch"]


class WindowControlNet(comfy.controlnet.ControlNet):
    """A ControlNet limited to the sampling-percent `window` (None: every step); `base` (a ControlBase or None)
    runs outside it; `record` (shared by every copy) is told each step's sigma and the run's sigmas
    (record.note(sigma, sample_sigmas or None))."""
    window = None
    base = None
    window_sigmas = None
    record = None

    @classmethod
    def wrap(cls, net, window, base, record):
        """A WindowControlNet sharing net's model (no weights are copied), as ControlNet.copy shares them."""
        w = cls(None, global_average_pooling=net.global_average_pooling, load_device=net.load_device,
                manual_cast_dtype=net.manual_cast_dtype)
        w.control_model, w.control_model_wrapped = net.control_model, net.control_model_wrapped
        net.copy_to(w)
        w.window, w.base, w.record = window, base, record
        return w

    def copy(self):
        return self.wrap(self, self.window, self.base, self.record)

    def set_cond_hint(self, cond_hint, strength=1.0, timestep_percent_range=(0.0, 1.0), vae=None, extra_concat=[]):
        if self.base is not None:
            self.base = self.base.copy().set_cond_hint(cond_hint, strength, timestep_percent_range, vae, extra_concat)
        if self.window is not None:
            start, end = timestep_percent_range
            # An empty intersection (start > end) makes get_control skip every step, as it should.
            timestep_percent_range = (max(start, self.window[0]), min(end, self.window[1]))
        return super().set_cond_hint(cond_hint, strength, timestep_percent_range, vae, extra_concat)

    def set_previous_controlnet(self, controlnet):
        if self.base is not None:
            self.base.set_previous_controlnet(controlnet)
        return super().set_previous_controlnet(controlnet)

    def pre_run(self, model, percent_to_timestep_function):
        super().pre_run(model, percent_to_timestep_function)
        if self.record is not None:
            self.record.start()
        if self.base is not None:
            self.base.pre_run(model, percent_to_timestep_function)
            self.window_sigmas = tuple(percent_to_timestep_function(p) for p in self.window)

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        if self.record is not None:
            self.record.note(float(t[0]), transformer_options.get("sample_sigmas"))
        # The complement of get_control's own range test, on the window alone: the base's steps.
        if self.base is not None and (t[0] > self.window_sigmas[0] or t[0] < self.window_sigmas[1]):
            return self.base.get_control(x_noisy, t, cond, batched_number, transformer_options)
        return super().get_control(x_noisy, t, cond, batched_number, transformer_options)

    def cleanup(self):
        if self.base is not None:
            self.base.cleanup()
        self.window_sigmas = None
        super().cleanup()

    def get_models(self):
        out = super().get_models()
        return out + [m for m in (self.base.get_models() if self.base is not None else []) if m not in out]


def load_controlnet_state_dict(weights, options):
    """ComfyUI's net for weights already read (diffusers keys converted, and popped from `weights`)."""
    return comfy.controlnet.load_controlnet_state_dict(weights, model_options=options)


def is_controlnet(net):
    """Whether ComfyUI built an SD-style ControlNet (not a T2I adapter or another control type)."""
    return isinstance(net, comfy.controlnet.ControlNet)


def control_weights(net):
    """The weights the built net holds, keyed as its control model names them (no `control_model.` prefix)."""
    return net.control_model.state_dict()


def with_attn1_patch(model, patch):
    """A clone of MODEL whose every self-attention first goes through patch(n, context, value, extra_options)."""
    patched = model.clone()
    patched.set_model_attn1_patch(patch)
    return patched


def add_post_route(path, handler):
    """Serve POST `path` with the aiohttp handler; False when no ComfyUI server runs in this process."""
    from server import PromptServer  # importing server.py outside the host (e.g. under pytest) would fail
    if getattr(PromptServer, "instance", None) is None:
        return False
    PromptServer.instance.routes.post(path)(handler)
    return True
