"""Stage functions a job runs (split, upscale-chunk, merge), shared by every backend."""
