"""The account dialog's AWS work, as plain functions run in worker threads (no widgets).

Each takes the dialog's choices as AppSettings captured on the GUI thread, opens its own
boto3 session (sessions are not shared between threads), and reports progress through the
TaskContext: stack events as text lines, the SSO prompt as a SignInPrompt.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsr_desktop.core.errors import InputError
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.gui.cloud.context import credentials_from
from vsr_desktop.gui.tasks import TaskContext

PARAM_GPU_TYPES = "GpuInstanceTypes"
PARAM_CPU_TYPES = "CpuInstanceTypes"
PARAM_MAX_PARALLEL = "MaxParallelChunks"
PARAM_IMAGE = "ContainerImage"


@dataclass(frozen=True)
class SignInPrompt:
    """What the user must do to approve the SSO sign-in (no secret in it)."""

    url: str
    code: str

    def html(self) -> str:
        url = html.escape(self.url)
        return (
            f'Open <a href="{url}">{url}</a> in a browser and check that it shows the '
            f"code <b>{html.escape(self.code)}</b>, then approve. Waiting…"
        )


def parameter_defaults() -> dict[str, str]:
    from vsr_desktop.backends.aws.stack_template import parameter_defaults as defaults

    return dict(defaults())


def profiles() -> list[str]:
    from vsr_desktop.backends.aws.session import list_profiles

    return list_profiles()


def is_sso(profile: str) -> bool:
    if not profile:
        return False
    from vsr_desktop.backends.aws.session import is_sso_profile
    from vsr_desktop.core.errors import VsrError

    try:
        return is_sso_profile(profile)
    except VsrError:
        return False


def _session(settings: AppSettings) -> Any:
    from vsr_desktop.backends.aws.session import open_session

    return open_session(credentials_from(settings))


def check(settings: AppSettings) -> str:
    """Who the credentials are (an ARN) and where: CredentialsError says what to fix."""
    from vsr_desktop.backends.aws.session import check_credentials

    session = _session(settings)
    return f"{check_credentials(session)} ({session.region_name})"


def store_keys(account: str, key_id: str, secret: str) -> str:
    from vsr_desktop.backends.aws.session import store_access_keys

    store_access_keys(account.strip(), key_id, secret)
    return account.strip()


def forget_keys(account: str) -> str:
    from vsr_desktop.backends.aws.session import forget_access_keys

    if not account.strip():
        raise InputError("No keychain label is given", "type the label the keys were kept as")
    forget_access_keys(account.strip())
    return account.strip()


def sso_sign_in(
    profile: str, ctx: TaskContext, client: Any = None, cache_dir: Path | None = None
) -> str:
    """Device authorisation: show the URL and code, then wait (cancellable) for approval."""
    from vsr_desktop.backends.aws import sso_login

    if not profile:
        raise InputError("No profile is chosen", "pick an SSO profile first")
    pending = sso_login.start_login(profile, client=client)
    ctx.report(SignInPrompt(pending.verification_uri_complete, pending.user_code))
    sso_login.wait_for_token(pending, cancel=ctx.cancel, client=client, cache_dir=cache_dir)
    return profile


def stack_status(settings: AppSettings) -> Any:
    from vsr_desktop.backends.aws.stack import describe_stack

    return describe_stack(_session(settings), settings.cloud_stack_name)


def deploy_parameters(gpu_types: str, max_parallel: int, image: str) -> dict[str, str]:
    """The template parameters the dialog sets. Anything else keeps its value on an update
    (deploy_stack sends UsePreviousValue), and an empty image field keeps the deployed one."""
    types = ",".join(t.strip() for t in gpu_types.split(",") if t.strip())
    if not types:
        raise InputError("No GPU instance type is given", "e.g. g4dn.xlarge,g5.xlarge")
    chosen = {PARAM_GPU_TYPES: types, PARAM_MAX_PARALLEL: str(max_parallel)}
    if image.strip():
        chosen[PARAM_IMAGE] = image.strip()
    return chosen


def _event_line(event: Any) -> str:
    return f"{event.timestamp:%H:%M:%S}  {event.describe()}"


def deploy(
    settings: AppSettings, parameters: dict[str, str], ctx: TaskContext, poll_seconds: float
) -> Any:
    from vsr_desktop.backends.aws.stack import deploy_stack
    from vsr_desktop.backends.aws.stack_template import template_body

    return deploy_stack(
        _session(settings),
        template_body(),
        parameters,
        settings.cloud_stack_name,
        on_event=lambda e: ctx.report(_event_line(e)),
        cancel=ctx.cancel,
        poll_seconds=poll_seconds,
    )


def teardown(settings: AppSettings, ctx: TaskContext, poll_seconds: float) -> None:
    from vsr_desktop.backends.aws.stack import delete_stack

    delete_stack(
        _session(settings),
        settings.cloud_stack_name,
        on_event=lambda e: ctx.report(_event_line(e)),
        cancel=ctx.cancel,
        poll_seconds=poll_seconds,
    )
    return None


def describe_stack_info(info: Any) -> str:
    bucket = info.outputs.get("BucketName", "")
    text = f"{info.status}"
    return f"{text} — bucket {bucket}" if bucket else text


def gpu_types_of(info: Any) -> str:
    return ",".join(info.list_parameter(PARAM_GPU_TYPES))
