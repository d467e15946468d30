"""The ControlNet side of sampling: the timestep-window maths, the window-aware file format, and the cross-frame
attention patch for video."""
