"""vsr_desktop: preview and upscale video with Real-ESRGAN models locally, on AWS or on Slurm."""

__version__ = "0.1.0"
