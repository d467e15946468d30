"""Latents as LDM and lllyasviel's ControlNet trainer use them: a fresh draw from the VAE posterior at every step.

The SD1.5 VAE (AutoencoderKL) encodes a photo to a diagonal Gaussian; ComfyUI's VAE.encode returns its
mode. The mean and log-variance are computed once, and every step draws mean + std * eps with eps from
that step's generator, so a resumed run draws what the unbroken one would have. A VAE without a
posterior (TAESD, the tests' tiny VAE, is a deterministic encoder) gives the same latents at every
step, and train.json says so.
"""
import torch

POSTERIOR = "posterior sample per step (mean and log-variance cached, eps from the step's generator)"
NO_POSTERIOR = "deterministic: this VAE ({}) has no posterior, so every step uses its one encoding"


def encode_posterior(vae, pixels, chunk=8):
    """(mean [N,4,h,w], std like mean or None, note) of pixels [N,H,W,3] in 0..1, before latent scaling.

    Runs ComfyUI's own VAE.encode with the Gaussian regulariser swapped for an identity, so the
    encoder's moments (mean and log-variance, 8 channels) come back instead of the mode.
    """
    from comfy.ldm.models.autoencoder import DiagonalGaussianRegularizer, EmptyRegularizer
    from comfy.ldm.modules.distributions.distributions import DiagonalGaussianDistribution
    model = vae.first_stage_model
    regulariser = getattr(model, "regularization", None)
    if not isinstance(regulariser, DiagonalGaussianRegularizer):
        latents = torch.cat([vae.encode(pixels[i:i + chunk]).float().cpu() for i in range(0, len(pixels), chunk)])
        return latents, None, NO_POSTERIOR.format(type(model).__name__)
    model.regularization = EmptyRegularizer()
    try:
        moments = torch.cat([vae.encode(pixels[i:i + chunk]).float().cpu() for i in range(0, len(pixels), chunk)])
    finally:
        model.regularization = regulariser
    posterior = DiagonalGaussianDistribution(moments)  # clamps the log-variance as ComfyUI and LDM do
    return posterior.mean, posterior.std, POSTERIOR


def draw_latents(mean, std, generator):
    """One draw per row of mean [B,4,h,w] (std None: the mean itself), eps from `generator` (CPU)."""
    if std is None:
        return mean
    eps = torch.randn(mean.shape, generator=generator).to(mean.device)
    return mean + std * eps
