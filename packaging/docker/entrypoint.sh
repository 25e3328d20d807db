#!/bin/sh
# The worker image's entrypoint. The stack's Batch job definitions pass the whole command
# ("vsr worker split"); `docker run IMAGE worker upscale --chunk 3` passes only its arguments.
# Both run `vsr`. exec makes vsr PID 1, so `docker stop` and the Spot notice's SIGTERM reach
# it directly and it stops cleanly (exit 143, nothing half-uploaded).
#
# SageMaker starts an inference container as `docker run IMAGE serve` and talks HTTP to port
# 8080 of every address in it (SAGEMAKER_BIND_TO_PORT overrides the port when it is set), so
# `serve` listens on 0.0.0.0 here, unlike `vsr serve`'s local default. Later arguments win:
# `docker run IMAGE serve --port 9000`. VSR_ALLOW_DOWNLOAD=1 (the SageMaker model's
# Environment) lets it fetch a requested model that is not in the image.
if [ "$1" = "vsr" ]; then
    shift
fi
if [ "$1" = "serve" ]; then
    shift
    if [ "${VSR_ALLOW_DOWNLOAD:-0}" = "1" ]; then
        set -- --download "$@"
    fi
    exec vsr serve --host 0.0.0.0 --port "${SAGEMAKER_BIND_TO_PORT:-8080}" "$@"
fi
exec vsr "$@"
