"""The denoising objective, restricted to a timestep window.

SD1.5 predicts the noise (epsilon) added to a clean latent x0 at timestep t:
    x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise,   loss = |eps(x_t, t) - noise|^2
ComfyUI's model_sampling holds only sigmas; alpha_bar = 1 / (1 + sigma^2). x_t above is exactly the
input ComfyUI's sampler feeds the UNet (calculate_input scales x0 + sigma * noise by 1/sqrt(1+sigma^2)).
"""
import torch
import torch.nn.functional as F


def sample_timesteps(n, t_lo, t_hi, generator):
    """n whole timesteps, uniform over [t_lo, t_hi] with both ends included (randint excludes its top)."""
    return torch.randint(t_lo, t_hi + 1, (n,), generator=generator)


def alpha_bars(model_sampling):
    """float64 [1000] alpha_bar of each discrete timestep, from ComfyUI's sigmas."""
    return 1.0 / (1.0 + model_sampling.sigmas.double().cpu() ** 2)


def noisy_latents(x0, noise, alpha_bar_t):
    """x_t for clean latents x0 [B,4,h,w], noise like x0 and alpha_bar_t [B]."""
    a = alpha_bar_t.view(-1, 1, 1, 1).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def control_residuals(residuals, unet_dtype):
    """The control dict the UNet consumes (it pops entries), as ComfyUI's control_merge builds it at strength 1.

    control_merge also multiplies every residual in place by the strength: at training's 1.0 an
    identity that still costs an elementwise pass over each of the 13 residuals, forward and backward.
    """
    return {"input": [], "middle": [], "output": []} | {
        k: [x.to(unet_dtype) for x in v] for k, v in residuals.items()}


def predict_noise(models, x_t, t, hint, context, unet_dtype, autocast_dtype=None, control=None):
    """The UNet's noise prediction with the ControlNet's residuals, as ComfyUI wires them at sampling.

    hint: condition images [B,3,H,W] in 0..1 at pixel size. context: text embeddings [B,77,768].
    Only the ControlNet runs under autocast (mixed precision); the frozen UNet runs in its own dtype.
    control: what runs the ControlNet, e.g. its DistributedDataParallel wrapper (default models.control_model).
    """
    timesteps = t.to(x_t.device, torch.float32)
    with torch.autocast(x_t.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        residuals = (control or models.control_model)(x=x_t, hint=hint, timesteps=timesteps, context=context)
    control = control_residuals(residuals, unet_dtype)
    eps = models.unet(x_t.to(unet_dtype), timesteps, context=context.to(unet_dtype), control=control)
    return eps.float()


def denoising_loss(models, x0, hint, context, t, noise, alpha_bar, unet_dtype, autocast_dtype=None, control=None):
    """Mean squared error of the predicted noise for one batch (latents x0 already scaled for the UNet)."""
    x_t = noisy_latents(x0, noise, alpha_bar[t].to(x0.device))
    eps = predict_noise(models, x_t, t, hint, context, unet_dtype, autocast_dtype, control)
    return F.mse_loss(eps, noise)
