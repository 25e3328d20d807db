"""`vsr cloud …`: set up the user's AWS account, send jobs there, follow, cancel, download.

Kept apart from cli.py so the AWS dependencies (boto3, keyring) load only for these commands.
Secrets never come through argv (they would land in shell history): `keys set` prompts.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from vsr_desktop.core.errors import CancelledError, InputError

STACK_OPTIONS = {  # CLI option → template parameter
    "gpu_instance_types": "GpuInstanceTypes",
    "max_gpu_vcpus": "MaxGpuVcpus",
    "image": "ContainerImage",
    "max_parallel": "MaxParallelChunks",
    "retention_days": "JobExpirationDays",
    "max_capacity_wait": "MaxCapacityWaitSeconds",
    "on_demand_fallback": "OnDemandGpuFallback",
    "notify_email": "NotificationEmail",
    "monthly_budget": "MonthlyBudgetUsd",
    "volume_size": "VolumeSizeGiB",
}


def add_cloud_parser(sub: Any, add_job_options: Any) -> None:
    """Register `vsr cloud` and its subcommands."""
    cloud = sub.add_parser("cloud", help="run jobs in your own AWS account")
    csub = cloud.add_subparsers(dest="cloud_command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = csub.add_parser(name, help=help_text)
        parser.add_argument("--profile", default=None, help="AWS profile (default: settings)")
        parser.add_argument("--region", default=None, help="AWS region (default: settings)")
        parser.add_argument(
            "--keychain",
            default=None,
            metavar="ACCOUNT",
            help="use access keys kept in the OS keychain under ACCOUNT",
        )
        parser.add_argument("--stack", default=None, help="stack name (default: vsr-desktop)")
        return parser

    setup = command("setup", "deploy or update the stack (bucket, Batch, state machine)")
    setup.add_argument(
        "--gpu-instance-types",
        default=None,
        help="comma-separated, e.g. g4dn.xlarge,g5.xlarge,g6.xlarge",
    )
    setup.add_argument("--max-gpu-vcpus", type=int, default=None)
    setup.add_argument("--image", default=None, help="worker container image URI (ECR)")
    setup.add_argument(
        "--max-parallel", type=int, default=None, help="chunks running at once (at most 40)"
    )
    setup.add_argument(
        "--retention-days",
        type=int,
        default=None,
        help="days before job files in the bucket expire",
    )
    setup.add_argument(
        "--max-capacity-wait",
        type=int,
        default=None,
        metavar="SECONDS",
        help="cancel a job that waits this long for capacity (600-86400, default 3600)",
    )
    setup.add_argument(
        "--on-demand-fallback",
        choices=("true", "false"),
        default=None,
        help="add an On-Demand GPU environment after Spot (costs ~3x; default false)",
    )
    setup.add_argument(
        "--notify-email",
        default=None,
        metavar="ADDRESS",
        help="email when a job ends, and for the budget alarm ('' turns it off)",
    )
    setup.add_argument(
        "--monthly-budget",
        type=int,
        default=None,
        metavar="USD",
        help="an AWS Budgets email alarm for the account (needs --notify-email; 0 = none)",
    )
    setup.add_argument(
        "--volume-size",
        type=int,
        default=None,
        metavar="GIB",
        help="root EBS volume per instance, the scratch space where there is no instance "
        "store (30-2000, default 100; docs/cloud.md 'Disk sizing')",
    )
    teardown = command(
        "teardown",
        "stop running work, delete the preview endpoint, the bucket and the stack",
    )
    teardown.add_argument("--yes", action="store_true", help="do not ask")
    command("status", "the stack's state and outputs, and who you are signed in as")
    command("login", "sign in to the profile's AWS SSO (device authorisation in a browser)")
    keys = command("keys", "keep access keys in the OS keychain (never in files)")
    keys.add_argument("action", choices=("set", "forget"))
    keys.add_argument("account", help="a label for these keys, e.g. 'studio'")

    estimate = command("estimate", "cost and time before you submit")
    add_job_options(estimate)
    submit = command("submit", "upload a video and upscale it in the cloud")
    add_job_options(submit)
    submit.add_argument("--yes", action="store_true", help="do not ask before spending (scripts)")
    submit.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop the job once it has cost this much (chunk time limits enforce it in AWS "
        "even with nothing watching; see docs/cloud.md)",
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow the job, then download the result"
    )
    for name, text in (
        ("poll", "refresh a cloud job's progress"),
        ("cancel", "stop a cloud job (and its Batch jobs)"),
        ("download", "download a finished cloud job's output"),
        ("retry", "run a failed or cancelled job again (keeps finished chunks)"),
    ):
        cmd = command(name, text)
        cmd.add_argument("job_id")
        if name == "retry":
            cmd.add_argument(
                "--max-cost",
                type=float,
                default=None,
                metavar="USD",
                help="a new cost cap for the job (0 = none); else the one it was sent with",
            )


def cmd_cloud(args: argparse.Namespace, spec_from_args: Any) -> int:
    """Dispatch `vsr cloud …`; errors surface as VsrErrors at the CLI edge."""
    handlers = {
        "setup": _setup,
        "teardown": _teardown,
        "status": _status,
        "login": _login,
        "keys": _keys,
        "estimate": _estimate,
        "submit": _submit,
        "poll": _poll,
        "cancel": _cancel,
        "download": _download,
        "retry": _retry,
    }
    args.spec_from_args = spec_from_args
    return int(handlers[args.cloud_command](args))


# ---------------------------------------------------------------------------- plumbing
def _credentials(args: argparse.Namespace) -> Any:
    from vsr_desktop.backends.aws.session import CloudCredentials
    from vsr_desktop.core.settings import SettingsFile

    saved = SettingsFile().load()
    region = args.region or getattr(saved, "cloud_region", None) or _env_region()
    if not region:
        raise InputError(
            "no AWS region chosen",
            "pass --region (e.g. eu-west-1) or set it in the app's cloud settings",
        )
    return CloudCredentials(
        region=region,
        profile=args.profile or getattr(saved, "cloud_profile", None) or None,
        keychain_account=args.keychain or getattr(saved, "cloud_keychain_account", None) or None,
    )


def _env_region() -> str | None:
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _session(args: argparse.Namespace) -> Any:
    from vsr_desktop.backends.aws.session import open_session

    return open_session(_credentials(args))


def _stack_name(args: argparse.Namespace) -> str:
    from vsr_desktop.backends.aws.stack import DEFAULT_STACK_NAME
    from vsr_desktop.core.settings import SettingsFile

    return str(
        args.stack or getattr(SettingsFile().load(), "cloud_stack_name", None) or DEFAULT_STACK_NAME
    )


def _backend(args: argparse.Namespace) -> Any:
    """The backend for new jobs: the options given, else the app's saved cloud settings."""
    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.backends.aws.session import open_session
    from vsr_desktop.core.jobs import JobStore

    credentials = _credentials(args)
    return AwsBackend(
        JobStore(), open_session(credentials), _stack_name(args), credentials=credentials
    )


def _job_backend(args: argparse.Namespace) -> tuple[Any, Any]:
    """A cloud job and its backend: the account, region and stack it was sent to."""
    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.core.jobs import JobStore

    store = JobStore()
    job = store.get(args.job_id)
    if job.backend != "aws":
        raise InputError(
            f"job {job.id} runs on {job.backend}, not in the cloud", "use `vsr jobs` for it"
        )
    return AwsBackend.for_job(store, job), job


def _print_event(event: Any) -> None:
    print(f"{event.timestamp:%H:%M:%S}  {event.describe()}", file=sys.stderr)


def _cancel_on_sigint() -> threading.Event:
    import signal

    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    return cancel


class BytesBar:
    """A tqdm bar for uploads and downloads."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(
                total=total,
                initial=done,
                unit="B",
                unit_scale=True,
                desc=self._label,
                dynamic_ncols=True,
            )
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ---------------------------------------------------------------------------- stack
def _setup(args: argparse.Namespace) -> int:
    from vsr_desktop.backends.aws.stack import deploy_stack
    from vsr_desktop.backends.aws.stack_template import template_body

    parameters = {
        param: str(getattr(args, option))
        for option, param in STACK_OPTIONS.items()
        if getattr(args, option) is not None
    }
    session = _session(args)
    name = _stack_name(args)
    print(
        f"deploying stack {name} in {session.region_name} (takes several minutes)…", file=sys.stderr
    )
    info = deploy_stack(
        session,
        template_body(),
        parameters,
        name,
        on_event=_print_event,
        cancel=_cancel_on_sigint(),
    )
    print(f"stack {name}: {info.status}", file=sys.stderr)
    for key, value in sorted(info.outputs.items()):
        print(f"  {key}: {value}")
    return 0


def _teardown(args: argparse.Namespace) -> int:
    from vsr_desktop.backends.aws.stack import delete_stack

    name = _stack_name(args)
    if not args.yes and not _confirm(
        f"Stop its running jobs and delete the stack {name}, its preview endpoint and "
        "every file in its bucket?"
    ):
        print("nothing deleted", file=sys.stderr)
        return 1
    delete_stack(_session(args), name, on_event=_print_event, cancel=_cancel_on_sigint())
    print(f"stack {name} deleted", file=sys.stderr)
    return 0


def _confirm(question: str) -> bool:
    """Ask y/N on the terminal; no answer (end of input) is No."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        print(file=sys.stderr)
        return False
    return answer.strip().lower() in {"y", "yes"}


def _status(args: argparse.Namespace) -> int:
    from vsr_desktop.backends.aws.session import check_credentials
    from vsr_desktop.backends.aws.stack import describe_stack

    session = _session(args)
    print(f"signed in as {check_credentials(session)} ({session.region_name})")
    info = describe_stack(session, _stack_name(args))
    if info is None:
        print("no stack yet: run `vsr cloud setup`")
        return 1
    print(f"stack {info.name}: {info.status}")
    for key, value in sorted(info.outputs.items()):
        print(f"  {key}: {value}")
    return 0


def _login(args: argparse.Namespace) -> int:
    from vsr_desktop.backends.aws import sso_login

    creds = _credentials(args)
    if not creds.profile:
        raise InputError(
            "SSO sign-in needs a profile", "pass --profile NAME (an SSO profile from ~/.aws/config)"
        )
    pending = sso_login.start_login(creds.profile)
    print(
        f"Open {pending.verification_uri_complete}\nand confirm the code "
        f"{pending.user_code} (waiting…)",
        file=sys.stderr,
    )
    sso_login.wait_for_token(pending, cancel=_cancel_on_sigint())
    print("signed in", file=sys.stderr)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from vsr_desktop.backends.aws.session import forget_access_keys, store_access_keys

    if args.action == "forget":
        forget_access_keys(args.account)
        print(f"forgot the keys for {args.account}", file=sys.stderr)
        return 0
    import getpass

    key_id = input("AWS access key ID: ").strip()
    secret = getpass.getpass("AWS secret access key: ").strip()
    if not key_id or not secret:
        raise InputError("both the key ID and the secret are needed")
    store_access_keys(args.account, key_id, secret)
    print(
        f"keys kept in the OS keychain as {args.account}; use --keychain {args.account}",
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------------------- jobs
def _estimate_for(args: argparse.Namespace, spec: Any, session: Any) -> Any:
    from vsr_desktop.backends.aws.cost import estimate_for_spec

    return estimate_for_spec(session, spec, _stack_name(args))


def _estimate(args: argparse.Namespace) -> int:
    spec = args.spec_from_args(args)
    print(_estimate_for(args, spec, _session(args)).describe())
    return 0


def _submit(args: argparse.Namespace) -> int:
    spec = args.spec_from_args(args)
    backend = _backend(args)
    from vsr_desktop.backends.aws.cost_cap import checked_cap

    cap = checked_cap(getattr(args, "max_cost", None))
    backend.stack()  # no stack: say so before asking about money
    backend.preflight()  # nor a quota or a worker image that can never run it
    estimate = _estimate_for(args, spec, backend.session)
    print(estimate.describe(), file=sys.stderr)
    question = f"Spend about ${estimate.total_usd:.2f} in your AWS account on this job?"
    if cap is not None:
        print(f"cost cap: ${cap:.2f} (the job is stopped when it reaches it)", file=sys.stderr)
        if estimate.total_usd > cap:
            question = (
                f"The estimate ${estimate.total_usd:.2f} is above the cap ${cap:.2f}: the job "
                "will likely be stopped before it ends. Send it anyway?"
            )
    if not getattr(args, "yes", False) and not _confirm(question):
        print("nothing sent (pass --yes to skip this question)", file=sys.stderr)
        return 1
    bar = BytesBar("upload")
    cancel = _cancel_on_sigint()
    try:
        job = backend.submit(
            spec,
            on_upload=bar,
            cancel=cancel,
            price_per_gpu_hour=estimate.usd_per_gpu_hour,
            max_cost_usd=cap,
        )
    except CancelledError:
        bar.close()
        print(
            "upload paused; continue it with `vsr cloud retry JOB` (or `vsr jobs resume JOB`)",
            file=sys.stderr,
        )
        return CancelledError.exit_code
    bar.close()
    print(f"job {job.id} started in the cloud ({job.chunks_total} chunks)", file=sys.stderr)
    print(job.id)
    if not args.wait:
        return 0
    return _follow(backend, job, cancel)


def _follow(backend: Any, job: Any, cancel: threading.Event) -> int:
    """Poll gently until the job ends, then download it."""
    interval = 5.0
    last = None
    while not job.state.is_finished:
        if cancel.wait(interval):
            print(
                f"stopped following; the job carries on (`vsr cloud poll {job.id}`)",
                file=sys.stderr,
            )
            return CancelledError.exit_code
        job = backend.poll(job)
        shown = (job.state, job.phase, job.frames_done)
        if shown != last:
            print(_describe(job), file=sys.stderr)
            interval = 5.0
        else:
            interval = min(interval * 1.5, 60.0)
        last = shown
    if job.state.value != "completed":
        print(f"job {job.id} {job.state.value}: {job.message}", file=sys.stderr)
        return 6
    return _download_job(backend, job)


def _describe(job: Any) -> str:
    cost = f"  ${job.cost_usd:.2f} so far (est.)" if job.cost_usd else ""
    return (
        f"{job.id}  {job.state.value}  {job.phase}  chunks {job.chunks_done}/"
        f"{job.chunks_total}  frames {job.frames_done}/{job.frames_total}{cost}  "
        f"{job.message}"
    ).rstrip()


def _download_job(backend: Any, job: Any) -> int:
    bar = BytesBar("download")
    try:
        path = backend.fetch_output(job, on_bytes=bar, cancel=_cancel_on_sigint())
    finally:
        bar.close()
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _poll(args: argparse.Namespace) -> int:
    backend, job = _job_backend(args)
    print(_describe(backend.poll(job)))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    backend, job = _job_backend(args)
    job = backend.cancel(job)
    print(f"cancelled {job.id} ({job.state.value}): {job.message}", file=sys.stderr)
    return 0


def _download(args: argparse.Namespace) -> int:
    backend, job = _job_backend(args)
    return _download_job(backend, backend.poll(job))


def _retry(args: argparse.Namespace) -> int:
    backend, job = _job_backend(args)
    if not job.state.is_resumable:
        raise InputError(
            f"job {job.id} is {job.state.value}",
            "only failed, cancelled or interrupted jobs can be retried",
        )
    if getattr(args, "max_cost", None) is not None:
        job = backend.set_cost_cap(job, args.max_cost)
    bar = BytesBar("upload")
    try:
        job = backend.resume(job, cancel=_cancel_on_sigint(), on_upload=bar)
    finally:
        bar.close()
    print(f"job {job.id} started again ({_describe(job)})", file=sys.stderr)
    return 0
