#!/bin/sh
# The worker image's entrypoint. The stack's Batch job definitions pass the whole command
# ("vsr worker split"); `docker run IMAGE worker upscale --chunk 3` passes only its arguments.
# Both run `vsr`. exec makes vsr PID 1, so `docker stop` and the Spot notice's SIGTERM reach
# it directly and it stops cleanly (exit 143, nothing half-uploaded).
if [ "$1" = "vsr" ]; then
    shift
fi
exec vsr "$@"
