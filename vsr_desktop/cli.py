"""The `vsr` command: upscale, preview, models, jobs, demo.

Every VsrError becomes one line on stderr and its own exit code; nothing else escapes as a
traceback unless --debug is given. Heavy modules (torch, av) are imported per command.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from vsr_desktop import __version__
from vsr_desktop.core.errors import CancelledError, InputError, VsrError

CODEC_CHOICES = (
    "h264",
    "h265",
    "av1",
    "prores",
    "vp9",
    "prores4444",
    "dnxhr-hq",
    "dnxhr-hqx",
    "ffv1",
    "qtrle",
    "png",
    "tiff",
)


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="realesr-animevideov3",
        help="model name from `vsr models list`, or a .pth/.safetensors file",
    )
    parser.add_argument(
        "--scale", type=float, default=None, help="output scale (default: the model's own, e.g. 4)"
    )
    parser.add_argument(
        "--denoise",
        type=float,
        default=None,
        dest="denoise_strength",
        help="denoise strength 0..1 (realesr-general-x4v3 only)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--devices",
        default="",
        help="local jobs: spread chunks over these GPUs, one engine each (0,1 or all; "
        "CUDA_VISIBLE_DEVICES applies)",
    )
    parser.add_argument(
        "--hwdecode",
        action="store_true",
        help="decode on the GPU (NVDEC); falls back to the CPU with a note",
    )
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument(
        "--compile",
        default=None,
        choices=("off", "default", "reduce-overhead", "max-autotune"),
        help="torch.compile the network (reduce-overhead: with CUDA graphs); opt-in, not yet "
        "measured faster (same as VSR_COMPILE; default off)",
    )
    parser.add_argument(
        "--cpu-conv",
        default="auto",
        dest="cpu_convolution",
        choices=("auto", "onednn", "winograd"),
        help="CPU convolutions: winograd runs one frame per core in fp32 "
        "(auto: whichever is faster on the first frames of each size)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=0,
        help="tile size in pixels (0: whole frames, tiles after out-of-memory)",
    )
    parser.add_argument(
        "--download", action="store_true", help="download the model if it is not cached yet"
    )


def _add_job_options(parser: argparse.ArgumentParser, input_required: bool = True) -> None:
    """Input, output, model and encoder choices: shared by `upscale` and `worker plan`."""
    parser.add_argument("input", type=Path, nargs=None if input_required else "?")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output file (default: INPUT_upscaled.mp4 beside the input); with --codec "
        "png/tiff a folder, or numbered names like out_%%06d.png",
    )
    _add_engine_options(parser)
    parser.add_argument("--codec", default="h264", choices=CODEC_CHOICES)
    parser.add_argument("--crf", type=int, default=None, help="quality: lower is better")
    parser.add_argument("--bitrate", type=int, default=None, help="bits per second instead of CRF")
    parser.add_argument("--preset", default=None, help="encoder speed preset")
    parser.add_argument(
        "--encoder",
        default="auto",
        choices=("auto", "software", "nvenc", "qsv", "amf", "videotoolbox"),
        help="auto: the codec's hardware encoder where one opens, else software (one note)",
    )
    parser.add_argument("--ten-bit", action="store_true", default=None, help="force 10-bit output")
    _add_geometry_options(parser)
    parser.add_argument(
        "--drop-alpha",
        action="store_true",
        help="write no alpha for a source with transparency (otherwise an output that cannot "
        "carry it is refused: use prores4444 .mov, vp9 .webm, ffv1 .mkv or qtrle .mov)",
    )
    parser.add_argument(
        "--audio-codec",
        default="auto",
        choices=("auto", "copy", "aac", "alac", "flac", "opus", "pcm"),
        help="audio in the output (auto: copy what the container plays, convert the rest "
        "with a note, lossless where it can)",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=60.0,
        help="chunk length: the unit of progress and resume",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--deinterlace",
        default="auto",
        choices=("auto", "off", "bwdif", "yadif"),
        help="interlaced input: make whole frames before the model (auto: bwdif when the "
        "source is interlaced, said once)",
    )
    parser.add_argument(
        "--double-rate",
        action="store_true",
        help="deinterlace to one frame per field (50i → 50p) instead of one per frame",
    )
    parser.add_argument(
        "--allow-damaged",
        action="store_true",
        help="upscale a damaged or truncated source anyway: frames that cannot be decoded "
        "repeat a neighbour (without it such a source stops the job with exit code 9)",
    )
    # Trim (core/trim.py): the output holds only this range, starting at 0.
    parser.add_argument(
        "--start",
        default=None,
        metavar="POINT",
        help="upscale from this frame on: a frame number (240), seconds (12.5s), 00:00:12.5, "
        "or SMPTE 01:00:12:05 (drop-frame 01:00:12;05; on the source's timecode when it "
        "has one)",
    )
    parser.add_argument(
        "--end",
        default=None,
        metavar="POINT",
        help="upscale up to and including this frame (an out point), in the forms of --start",
    )


def _add_geometry_options(parser: argparse.ArgumentParser) -> None:
    """Target size and pixel shape (core.media.geometry); png/tiff write numbered images."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        default=None,
        metavar="WxH",
        help="output frame size, e.g. 3840x2160 (see --fit); the model upscales, then a "
        "Lanczos resample brings the frame to it",
    )
    size.add_argument(
        "--height",
        type=int,
        default=None,
        help="output height; the width follows the display aspect (rounded to even)",
    )
    parser.add_argument(
        "--fit",
        default="fit",
        choices=("fit", "pad", "crop"),
        help="with --size: fit inside it, pad to it with black bars, or crop to fill it",
    )
    parser.add_argument(
        "--square-pixels",
        action="store_true",
        help="resample anamorphic sources (e.g. 720x576 SAR 16:15) to square pixels "
        "instead of keeping their pixel aspect",
    )


def _add_worker_parser(sub: Any) -> None:
    worker = sub.add_parser("worker", help="stages of a distributed job (Slurm, AWS Batch)")
    wsub = worker.add_subparsers(dest="worker_command", required=True)
    plan = wsub.add_parser("plan", help="probe the source and cut the chunk plan")
    _add_job_options(plan, input_required=False)
    plan.add_argument("--workdir", type=Path, required=True, help="shared work folder")
    plan.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="the job spec file the app wrote (instead of INPUT and options)",
    )
    job_uri_help = "s3://BUCKET/jobs/JOB_ID of an AWS job (default: $VSR_JOB_URI)"
    split = wsub.add_parser("split", help="AWS: probe the job's source in S3 and upload the plan")
    split.add_argument("--job-uri", default=None, help=job_uri_help)
    up = wsub.add_parser("upscale", help="upscale one chunk (idempotent)")
    up_where = up.add_mutually_exclusive_group()
    up_where.add_argument("--workdir", type=Path, default=None, help="shared work folder (Slurm)")
    up_where.add_argument("--job-uri", default=None, help=job_uri_help)
    up.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="chunk index (default: $VSR_CHUNK_INDEX, $SLURM_ARRAY_TASK_ID or "
        "$AWS_BATCH_JOB_ARRAY_INDEX)",
    )
    merge = wsub.add_parser("merge", help="join the chunks and the source's audio")
    merge_where = merge.add_mutually_exclusive_group()
    merge_where.add_argument(
        "--workdir", type=Path, default=None, help="shared work folder (Slurm)"
    )
    merge_where.add_argument("--job-uri", default=None, help=job_uri_help)
    status = wsub.add_parser("status", help="progress of every chunk, as JSON")
    status.add_argument("--workdir", type=Path, required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsr", description="Upscale video with Real-ESRGAN models."
    )
    parser.add_argument("--version", action="version", version=f"vsr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upscale", help="upscale a whole video")
    _add_job_options(up)
    up.add_argument("--quiet", action="store_true", help="no progress bar")
    up.add_argument(
        "--restart",
        action="store_true",
        help="start over instead of resuming an unfinished run of the same job",
    )

    pv = sub.add_parser("preview", help="write a before/after picture of one frame")
    pv.add_argument("input", type=Path)
    pv.add_argument("--frame", type=int, default=0)
    pv.add_argument("-o", "--output", type=Path, required=True)
    pv.add_argument("--region", default=None, help="X,Y,WIDTH,HEIGHT of the source to upscale")
    pv.add_argument("--mode", default="side-by-side", choices=("split", "side-by-side"))
    pv.add_argument(
        "--deinterlace",
        default="auto",
        choices=("auto", "off", "bwdif", "yadif"),
        help="show the frame as a job with this setting would upscale it (auto: deinterlaced "
        "when the source is interlaced)",
    )
    _add_engine_options(pv)

    verify = sub.add_parser(
        "verify",
        help="say what, other than the picture, differs between a source and its upscale",
        description="Compare OUTPUT with SOURCE: frame count and timestamps, duration, A/V "
        "offset, every other stream (language, title, dispositions; packets of copied "
        "streams bit-exact), chapters, global tags, timecode, colour tags, display aspect, "
        "rotation, alpha and frame-rate headers. One line per difference. Exit status: 0 "
        "when nothing was lost, 8 when something differs, 2/3 when a file is missing or "
        "unreadable.",
    )
    verify.add_argument("source", type=Path)
    verify.add_argument("output", type=Path)
    verify.add_argument(
        "--json",
        action="store_true",
        help='print {"ok", "differences": [{"what", "source", "output", "message"}], "facts"}',
    )
    verify.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="WHAT",
        help="a change that was asked for, listed apart instead of failing: a pattern on "
        "the difference's `what`, e.g. 'audio#*.codec' (repeatable)",
    )

    models = sub.add_parser("models", help="list, download or import models")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="models by name, and whether they are here")
    dl = msub.add_parser("download", help="download a model into the cache")
    dl.add_argument("name")
    imp = msub.add_parser("import", help="convert an ncnn .param/.bin model to safetensors")
    imp.add_argument("param", type=Path)
    imp.add_argument("-o", "--output", type=Path, default=None)

    jobs = sub.add_parser(
        "jobs", help="list, show, cancel, resume, retry or remove jobs (on any backend)"
    )
    jsub = jobs.add_subparsers(dest="jobs_command", required=True)
    jsub.add_parser("list", help="every job, newest first")
    helps = {
        "show": "every field of one job, refreshed from where it runs",
        "cancel": "stop a job wherever it runs (finished chunks stay)",
        "resume": "continue from the finished chunks",
        "retry": "start a stopped job over from nothing",
        "fetch": "bring a finished remote job's output to its local path",
        "remove": "delete a stopped job's work files and its record (never the output)",
    }
    for name, text in helps.items():
        cmd = jsub.add_parser(name, help=text)
        cmd.add_argument("job_id")
        if name in ("resume", "retry"):
            cmd.add_argument(
                "--overwrite",
                action="store_true",
                help="replace an output file that appeared meanwhile",
            )
            cmd.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "resume":
            cmd.add_argument(
                "--restart", action="store_true", help="start over (e.g. after the source changed)"
            )

    _add_worker_parser(sub)

    slurm = sub.add_parser("slurm", help="run jobs on a Slurm cluster")
    ssub = slurm.add_subparsers(dest="slurm_command", required=True)
    submit = ssub.add_parser("submit", help="split → array of chunk tasks → merge")
    _add_job_options(submit)
    submit.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="a folder every node sees (shared filesystem); with --ssh, an "
        "absolute path on the cluster",
    )
    submit.add_argument(
        "--ssh",
        default=None,
        metavar="USER@HOST",
        help="submit through this login host over SSH: the source goes up "
        "with the job and the output comes back when it ends",
    )
    submit.add_argument("--ssh-port", type=int, default=None)
    submit.add_argument("--ssh-key", default=None, metavar="PATH", help="ssh -i key")
    submit.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra `ssh -o` option (repeatable)",
    )
    submit.add_argument(
        "--ssh-env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set on the login host for each Slurm command, e.g. "
        "SLURM_CONF=/etc/slurm-alt/slurm.conf (repeatable). A VALUE is kept in the OS "
        "keychain, never in the job store; NAME alone takes the value from the environment "
        "of each vsr command (`export SLURM_JWT=…`: keeps a secret out of `ps` too)",
    )
    submit.add_argument(
        "--remote-vsr",
        default="vsr",
        metavar="CMD",
        help="how the cluster runs vsr with --ssh (default: vsr), e.g. "
        "'/shared/vsr-venv/bin/vsr' or 'apptainer exec --nv vsr.sif vsr'",
    )
    submit.add_argument("--partition", default=None)
    submit.add_argument("--gpus-per-task", type=int, default=0)
    submit.add_argument(
        "--max-parallel",
        type=int,
        default=4,
        help="chunk tasks running at once (sbatch --array %%K)",
    )
    for name in ("status", "cancel"):
        cmd = ssub.add_parser(name)
        cmd.add_argument("job_id")

    from vsr_desktop.cli_cloud import add_cloud_parser

    add_cloud_parser(sub, _add_job_options)
    from vsr_desktop.cli_gpu_addon import add_gpu_addon_parser, cmd_gpu_addon

    add_gpu_addon_parser(sub)
    COMMANDS["gpu-addon"] = cmd_gpu_addon

    serve = sub.add_parser(
        "serve", help="preview inference server (SageMaker's /ping, /invocations)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (the container uses 0.0.0.0)"
    )
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--max-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest request body; bigger ones get 413 unread",
    )
    serve.add_argument(
        "--max-pixels", type=int, default=1024 * 1024, help="largest region, in input pixels"
    )
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    serve.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    serve.add_argument("--tile", type=int, default=0)
    serve.add_argument(
        "--download", action="store_true", help="download a requested model that is not cached yet"
    )
    serve.add_argument(
        "--token",
        default=None,
        help="bearer token clients must send (default: $VSR_SERVE_TOKEN); required when "
        "--host is not loopback, except inside SageMaker",
    )
    serve.add_argument("--threads", type=int, default=8, help="worker threads")
    serve.add_argument("--connections", type=int, default=200, help="most open connections")
    serve.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds to send a request's headers"
    )
    serve.add_argument(
        "--body-timeout", type=float, default=60.0, help="seconds to send a request's body"
    )

    demo = sub.add_parser("demo", help="upscale the bundled sample clip (what `make run` does)")
    demo.add_argument("-o", "--output-dir", type=Path, default=Path("out"))
    demo.add_argument("--device", default="auto")
    demo.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    return parser


class _ProgressBar:
    """tqdm bar fed from progress events (the CLI's view of the job)."""

    def __init__(self, quiet: bool) -> None:
        self._bar: Any = None
        self._quiet = quiet

    def __call__(self, event: Any) -> None:
        if self._quiet:
            return
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(
                total=event.frames_total,
                unit="frame",
                dynamic_ncols=True,
                initial=event.frames_done,
            )
        self._bar.n = event.frames_done
        self._bar.set_postfix_str(
            f"{event.phase} chunks {event.chunks_done}/{event.chunks_total} {event.fps:.2f} fps",
            refresh=False,
        )
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _install_sigint(cancel: threading.Event) -> None:
    """First Ctrl-C cancels cooperatively (the job stays resumable); a second one kills."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ncancelling after the current frame…", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _default_output(source: Path) -> Path:
    return source.with_name(f"{source.stem}_upscaled.mp4")


def _engine_settings_from_args(args: argparse.Namespace) -> Any:
    from vsr_desktop.core.job_spec import EngineSettings

    return EngineSettings(
        model=args.model,
        outscale=args.scale,
        denoise_strength=args.denoise_strength,
        device=args.device,
        precision=args.precision,
        tile=args.tile,
        cpu_convolution=args.cpu_convolution,
        allow_download=args.download,
        batch_size=getattr(args, "batch_size", 1),
        devices=getattr(args, "devices", ""),
        hardware_decode=getattr(args, "hwdecode", False),
        compile=getattr(args, "compile", None) or "",
    )


def _spec_from_args(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from vsr_desktop.core.job_spec import JobSpec
    from vsr_desktop.core.media.encode import EncodeSettings

    if getattr(args, "spec", None) is not None:
        try:
            return JobSpec.from_json(args.spec.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read the job spec {args.spec} ({exc.strerror})") from exc
    if args.input is None:
        raise InputError("no input given", "pass INPUT (or --spec FILE)")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    engine = _engine_settings_from_args(args)
    return JobSpec(
        source=args.input,
        output=args.output or _default_output(args.input),
        engine=replace(engine, batch_size=args.batch_size),
        encode=EncodeSettings(
            codec=args.codec,
            crf=args.crf,
            bitrate=args.bitrate,
            preset=args.preset,
            encoder=args.encoder,
            ten_bit=args.ten_bit,
            audio_codec=args.audio_codec,
            drop_alpha=args.drop_alpha,
            **_geometry_from_args(args),
        ),
        chunk_seconds=args.chunk_seconds,
        overwrite=args.overwrite,
        allow_damaged=args.allow_damaged,
        deinterlace=args.deinterlace,
        double_rate=args.double_rate,
        trim_start=getattr(args, "start", None),
        trim_end=getattr(args, "end", None),
        # Where the frames will be upscaled: the memory guard checks this machine for local jobs.
        backend={"slurm": "slurm", "cloud": "aws"}.get(getattr(args, "command", ""), "local"),
    )


def _geometry_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """EncodeSettings' target fields from --size/--height/--fit/--square-pixels."""
    from vsr_desktop.core.media.geometry import parse_size

    width, height = parse_size(args.size) if args.size else (None, args.height)
    if args.fit != "fit" and args.size is None:
        raise InputError(f"--fit {args.fit} needs a --size box", "add --size WxH")
    return {"width": width, "height": height, "fit": args.fit, "square_pixels": args.square_pixels}


def cmd_upscale(args: argparse.Namespace) -> int:
    from vsr_desktop.backends.local import LocalBackend
    from vsr_desktop.core.jobs import JobStore

    backend = LocalBackend(JobStore())
    backend.clean_stale_outputs()
    job = backend.prepare(_spec_from_args(args), restart=args.restart)
    return _run_job(job, backend, quiet=args.quiet)


def _slurm_backend(workdir: Path, args: argparse.Namespace | None = None) -> Any:
    """The backend for `vsr slurm submit`'s target; the job's spec keeps that target, so
    status, cancel, resume and remove later rebuild it from the record alone. Every value
    that reaches a job script or an ssh command line is checked here first, by its flag."""
    from pathlib import PurePosixPath

    from vsr_desktop.backends.slurm import SlurmBackend, SlurmTarget
    from vsr_desktop.backends.slurm_remote import SshLogin
    from vsr_desktop.core import safe_values
    from vsr_desktop.core.jobs import JobStore

    partition = getattr(args, "partition", None) or None
    if partition is not None:
        safe_values.partition(partition, "--partition")
    gpus = safe_values.whole_number(getattr(args, "gpus_per_task", 0), "--gpus-per-task", 0, 1024)
    parallel = safe_values.whole_number(
        getattr(args, "max_parallel", 4), "--max-parallel", 1, 100_000
    )
    ssh_host = getattr(args, "ssh", None)
    extra: dict[str, Any] = {}
    if ssh_host and args is not None:
        safe_values.workdir(str(workdir), "--workdir")
        login = SshLogin(
            host=safe_values.ssh_host(ssh_host, "--ssh"),
            port=safe_values.ssh_port(args.ssh_port, "--ssh-port"),
            key=safe_values.file_path(args.ssh_key, "--ssh-key") if args.ssh_key else None,
            options=tuple(safe_values.ssh_option(o, "--ssh-option") for o in args.ssh_option),
        )
        env = [_name_value(item, "--ssh-env") for item in args.ssh_env]
        extra = {
            "workdir_root": PurePosixPath(workdir),
            "ssh": login,
            "vsr_command": safe_values.split_command(args.remote_vsr, "--remote-vsr"),
            "env": {name: value for name, value in env if value is not None},
            "env_names": safe_values.names([name for name, _ in env], "--ssh-env"),
        }
    else:
        safe_values.workdir(str(workdir.resolve()), "--workdir")
    target = SlurmTarget(
        **{
            "workdir_root": workdir.resolve(),
            "partition": partition,
            "gpus_per_task": gpus,
            "max_parallel": parallel,
            **extra,
        }
    )
    return SlurmBackend(JobStore(), target)


def _name_value(item: str, flag: str) -> tuple[str, str | None]:
    """NAME=VALUE (the value goes to the keychain, never to a file of ours) or NAME (the
    value is read from the environment whenever it is needed)."""
    from vsr_desktop.core import safe_values

    name, sep, value = item.partition("=")
    safe_values.env_name(name, flag)
    return name, safe_values.env_value(value, f"{flag} {name}") if sep else None


def cmd_slurm(args: argparse.Namespace) -> int:
    from vsr_desktop.core.jobs import JobStore

    if args.slurm_command == "submit":
        backend = _slurm_backend(args.workdir, args)
        job = backend.submit(_spec_from_args(args))
        ids = backend.job_ids(job)
        print(job.id)
        print(
            f"submitted job {job.id}: Slurm jobs split {ids.split}, "
            f"array {ids.array} ({ids.chunks} chunks), merge {ids.merge}",
            file=sys.stderr,
        )
        return 0
    from vsr_desktop.backends.registry import default_registry

    store = JobStore()
    job = store.get(args.job_id)
    if job.backend != "slurm":
        raise InputError(f"job {job.id} is not a Slurm job", "use `vsr jobs` for it")
    backend = default_registry(store).for_job(job)
    if args.slurm_command == "cancel":
        job = backend.cancel(job)
        print(f"cancelled {job.id} ({job.state.value})", file=sys.stderr)
        return 0
    job = backend.poll(job)
    print(
        f"{job.id}  {job.state.value}  {job.phase}  chunks {job.chunks_done}/"
        f"{job.chunks_total}  frames {job.frames_done}/{job.frames_total}  {job.message}"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """One stage of a distributed job; SIGTERM (Spot notice, scancel) stops it cleanly."""
    import json
    import os

    from vsr_desktop.worker import stages

    if args.worker_command == "plan":
        plan = stages.plan_stage(_spec_from_args(args), args.workdir)
        print(len(plan.chunks))
        return 0
    if args.worker_command == "split":
        from vsr_desktop.worker import s3_job

        cancel = threading.Event()
        _install_sigint(cancel)
        try:
            plan = s3_job.split_from_s3(s3_job.resolve_job_uri(args.job_uri), cancel=cancel)
        except CancelledError:
            print("split stopped; run it again", file=sys.stderr)
            return 143
        print(len(plan.chunks))
        return 0
    if args.worker_command == "upscale":
        index = args.chunk
        if index is None:
            env = (
                os.environ.get("VSR_CHUNK_INDEX")
                or os.environ.get("SLURM_ARRAY_TASK_ID")
                or os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX")
            )
            if env is None:
                raise InputError(
                    "no chunk index given",
                    "pass --chunk N (or run as a Slurm/AWS Batch array task)",
                )
            if not env.strip().isdigit():
                raise InputError(f"chunk index {env!r} is not a number", "pass --chunk N")
            index = int(env)
        cancel = threading.Event()
        _install_sigint(cancel)
        try:
            if args.workdir is not None:
                did = stages.upscale_stage(args.workdir, index, cancel=cancel)
            else:
                from vsr_desktop.worker import s3_job

                did = s3_job.upscale_from_s3(
                    s3_job.resolve_job_uri(args.job_uri), index, cancel=cancel
                )
        except CancelledError:
            print(f"chunk {index} stopped; run it again to redo it", file=sys.stderr)
            return 143
        print(f"chunk {index} {'done' if did else 'was already done'}", file=sys.stderr)
        return 0
    if args.worker_command == "merge":
        cancel = threading.Event()
        _install_sigint(cancel)
        try:
            if args.workdir is not None:
                warnings = stages.merge_stage(args.workdir, cancel=cancel)
            else:
                from vsr_desktop.worker import s3_job

                warnings = s3_job.merge_from_s3(s3_job.resolve_job_uri(args.job_uri), cancel=cancel)
        except CancelledError:
            print("merge stopped; run it again", file=sys.stderr)
            return 143
        for warning in warnings:
            print(f"note: {warning}", file=sys.stderr)
        return 0
    progress = stages.read_progress(args.workdir)
    print(json.dumps(vars(progress), default=str))
    return 0


def _run_job(
    job: Any,
    backend: Any,
    quiet: bool,
    *,
    resume: bool = False,
    restart: bool = False,
    overwrite: bool = False,
) -> int:
    """Run (or resume) a job in this process with a progress bar; Ctrl-C or SIGTERM cancels
    cooperatively and leaves it resumable."""
    done = backend.store.finished_chunks(job.id)
    if done and not restart:
        print(f"resuming job {job.id}: {len(done)} chunk(s) already done", file=sys.stderr)
    else:
        print(f"job {job.id}: {job.source} → {job.output}", file=sys.stderr)
    cancel = threading.Event()
    _install_sigint(cancel)
    bar = _ProgressBar(quiet)
    try:
        if resume:
            result = backend.resume(
                job, progress=bar, cancel=cancel, restart=restart, overwrite=overwrite
            )
        else:
            result = backend.run(job, progress=bar, cancel=cancel, restart=restart)
    except CancelledError:
        bar.close()
        print(f"cancelled; resume with `vsr jobs resume {job.id}`", file=sys.stderr)
        return CancelledError.exit_code
    finally:
        bar.close()
    print(f"wrote {result.output}", file=sys.stderr)
    if result.message:
        print(f"note: {result.message}", file=sys.stderr)
    return 0


def _engine_for(args: argparse.Namespace) -> Any:
    from vsr_desktop.worker.job_setup import build_engine, check_engine_settings

    settings = _engine_settings_from_args(args)
    check_engine_settings(settings)
    return build_engine(settings)


def cmd_preview(args: argparse.Namespace) -> int:
    from vsr_desktop.core.media.probe import probe
    from vsr_desktop.core.preview import Region, compose, render_before_after, save_png

    if args.output.suffix.lower() != ".png":
        raise InputError(f"{args.output.name} is not a .png file", "name the output *.png")
    if not args.output.parent.is_dir():
        raise InputError(f"the folder {args.output.parent} does not exist")
    info = probe(args.input)
    region = Region.parse(args.region) if args.region else None
    before, after = render_before_after(
        info, args.frame, _engine_for(args), region, deinterlace=args.deinterlace
    )
    labels = ("Before (bicubic)", f"After ({Path(args.model).stem})")
    save_png(compose(before, after, args.mode, labels), args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Differences on stdout, one per line (or JSON); exit 8 when there is any."""
    from vsr_desktop.core.media.verify import DIFFERENCES_EXIT_CODE, verify_files

    report = verify_files(args.source, args.output, expected=args.expect)
    if args.json:
        _print_line(report.to_json())
    else:
        for line in report.lines():
            _print_line(line)
        for diff in report.expected:
            print(f"expected: {diff.message}", file=sys.stderr)
        video = report.facts["output"]["video"]
        verdict = (
            "nothing but the picture differs"
            if report.ok
            else f"{len(report.differences)} difference(s)"
        )
        print(
            f"{args.output.name}: {verdict} ({video['frames']} frames, "
            f"{video['width']}x{video['height']})",
            file=sys.stderr,
        )
    return 0 if report.ok else DIFFERENCES_EXIT_CODE


def cmd_models(args: argparse.Namespace) -> int:
    from vsr_desktop.core import models

    if args.models_command == "list":
        for spec in models.MODEL_REGISTRY.values():
            here = (
                "bundled"
                if spec.name == models.DEFAULT_MODEL_NAME
                else ("cached" if models.cached_model_path(spec) else "not downloaded")
            )
            print(f"{spec.name:32} x{spec.scale}  {spec.arch:16} {here:15} {spec.description}")
        return 0
    if args.models_command == "download":
        from tqdm import tqdm

        spec = models.get_spec(args.name)
        with tqdm(total=spec.size_bytes, unit="B", unit_scale=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            path = models.download_model(spec, progress=progress)
        print(f"saved {path}", file=sys.stderr)
        return 0
    out = args.output or args.param.with_suffix(".safetensors")
    loaded = models.import_ncnn_to_file(args.param, out)
    scale = (
        f"x{loaded.scale} network, x{loaded.output_scale:g} output (its graph ends in a "
        "resize; --scale overrides)"
        if loaded.output_scale
        else f"x{loaded.scale}"
    )
    print(f"imported {loaded.arch} {scale} → {out}", file=sys.stderr)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """Every job, whatever its backend, through the backend registry."""
    from vsr_desktop.backends.local import LocalBackend
    from vsr_desktop.backends.registry import default_registry
    from vsr_desktop.core.errors import JobError
    from vsr_desktop.core.jobs import JobState, JobStore

    store = JobStore()
    LocalBackend(store).clean_stale_outputs()
    if args.jobs_command == "list":
        for job in store.all_jobs():
            _print_line(
                f"{job.id}  {job.state.value:11} {job.progress:6.1%}  {job.backend:6} "
                f"{job.name} → {job.output}"
            )
        return 0
    if args.jobs_command == "remove" and store.exists(args.job_id):
        try:
            store.get(args.job_id)
        except JobError as exc:  # a row no backend can read: forget the record alone
            store.delete(args.job_id)
            print(
                f"removed the unreadable record of job {args.job_id} ({exc.message}); "
                "its work files, if any, were left in place",
                file=sys.stderr,
            )
            return 0
    job = store.get(args.job_id)
    backend = default_registry(store).for_job(job)
    if args.jobs_command == "show":
        job = backend.poll(job)
        for key, value in vars(job).items():
            if key == "spec":
                value = value.to_json() if value is not None else None
            _print_line(f"{key:13} {value.value if hasattr(value, 'value') else value}")
        return 0
    if args.jobs_command == "cancel":
        job = backend.cancel(job)
        print(f"cancel sent to job {job.id} ({job.state.value})", file=sys.stderr)
        return 0
    if args.jobs_command == "remove":
        lost = backend.work_lost_on_remove(job)
        backend.remove(job)
        print(f"removed job {job.id}" + (f" ({lost})" if lost else ""), file=sys.stderr)
        return 0
    if args.jobs_command == "fetch":
        return _fetch(backend, job)
    job = backend.poll(job)
    restart = args.jobs_command == "retry" or bool(getattr(args, "restart", False))
    if not backend.runs_in_process:  # it decides what a resume of a finished job means
        job = backend.resume(job, restart=restart, overwrite=args.overwrite)
        print(f"job {job.id}: {job.state.value} {job.message}".rstrip(), file=sys.stderr)
        return 0
    if job.state is JobState.COMPLETED and not restart:
        print(f"job {job.id} is already completed: {job.output}", file=sys.stderr)
        return 0
    return _run_job(
        job, backend, quiet=args.quiet, resume=True, restart=restart, overwrite=args.overwrite
    )


def _fetch(backend: Any, job: Any) -> int:
    """Bring a finished remote output here, with a byte progress bar."""
    from vsr_desktop.cli_cloud import BytesBar

    bar = BytesBar("download")
    try:
        path = backend.fetch_output(job, on_bytes=bar)
    finally:
        bar.close()
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _print_line(text: str) -> None:
    """print() that ends quietly when the reader has gone (`vsr jobs list | head`)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None


def cmd_demo(args: argparse.Namespace) -> int:
    """Upscale the bundled sample with the bundled model: output video plus a comparison."""
    from vsr_desktop.core.job_spec import EngineSettings, JobSpec
    from vsr_desktop.core.jobs import JobStore
    from vsr_desktop.core.media.probe import probe
    from vsr_desktop.core.preview import compose, render_before_after, save_png
    from vsr_desktop.resources import sample_clip_path

    args.output_dir.mkdir(parents=True, exist_ok=True)
    sample = sample_clip_path()
    video_out = args.output_dir / "sample_x4.mp4"
    spec = JobSpec(
        source=sample,
        output=video_out,
        overwrite=True,
        engine=EngineSettings(device=args.device, precision=args.precision),
    )
    from vsr_desktop.backends.local import LocalBackend
    from vsr_desktop.worker.job_setup import build_engine

    engine = build_engine(spec.engine)  # one model load for the job and the picture
    backend = LocalBackend(JobStore(), engine_factory=lambda _: engine)
    code = _run_job(backend.prepare(spec), backend, quiet=False)
    if code:
        return code
    info = probe(sample)
    before, after = render_before_after(info, info.video.frame_count // 2, engine)
    picture = args.output_dir / "sample_compare.png"
    save_png(
        compose(
            before, after, "side-by-side", ("Before (bicubic)", f"After ({spec.engine.model})")
        ),
        picture,
    )
    print(f"wrote {picture}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM (SageMaker, `docker stop`) or Ctrl-C; both stop cleanly, exit 0."""
    import logging
    import os

    from vsr_desktop.worker.inference_server import ServerOptions, serve

    if args.max_bytes < 1 or args.max_pixels < 1:
        raise InputError("--max-bytes and --max-pixels must be positive")
    timeouts = (args.header_timeout, args.body_timeout)
    if min(args.threads, args.connections) < 1 or not all(0 < t < 1e6 for t in timeouts):
        raise InputError("--threads, --connections and the timeouts must be positive")
    token = args.token if args.token is not None else os.environ.get("VSR_SERVE_TOKEN", "")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    options = ServerOptions(
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        device=args.device,
        precision=args.precision,
        tile=args.tile,
        allow_download=args.download,
        token=token or None,
        threads=args.threads,
        connection_limit=args.connections,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
    )
    try:
        serve(args.host, args.port, args.max_bytes, stop=stop, options=options)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror})",
            "choose another --port or stop what uses it",
        ) from None
    return 0


def cmd_cloud(args: argparse.Namespace) -> int:
    from vsr_desktop import cli_cloud

    return cli_cloud.cmd_cloud(args, _spec_from_args)


COMMANDS = {
    "upscale": cmd_upscale,
    "worker": cmd_worker,
    "slurm": cmd_slurm,
    "preview": cmd_preview,
    "verify": cmd_verify,
    "models": cmd_models,
    "jobs": cmd_jobs,
    "demo": cmd_demo,
    "cloud": cmd_cloud,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VsrError as exc:
        if args.debug:
            raise
        print(f"vsr: error: {exc.user_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
