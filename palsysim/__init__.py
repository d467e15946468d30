"""PalsySim core: ComfyUI-free functions on arrays and tensors."""
