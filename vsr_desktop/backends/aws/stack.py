"""Deploy, describe and tear down the app's CloudFormation stack, with live progress.

The user clicks "Set up" once; the stack (bucket, Batch, state machine, roles) is created or
updated from the template shipped in the package, and every stack event is reported as it
happens, so a ten-minute deployment never looks frozen. An update keeps every parameter
the caller did not pass (UsePreviousValue): `vsr cloud setup --max-parallel 40` must not put
the worker image back to its placeholder. Teardown first stops and deletes what bills
outside the stack (running work, the preview endpoint, the bucket's objects: teardown.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import CloudError, cloud_error
from vsr_desktop.core.errors import CancelledError

DEFAULT_STACK_NAME = "vsr-desktop"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]

_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
_FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "DELETE_FAILED",
}


@dataclass(frozen=True)
class StackEvent:
    """One line of deployment progress (what the console's Events tab shows)."""

    timestamp: datetime
    resource: str
    resource_type: str
    status: str
    reason: str

    def describe(self) -> str:
        text = f"{self.resource} ({self.resource_type}): {self.status}"
        return f"{text} — {self.reason}" if self.reason else text


@dataclass(frozen=True)
class StackInfo:
    """A deployed stack: its status and the outputs the backend needs."""

    name: str
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status in _DONE or self.status == "UPDATE_ROLLBACK_COMPLETE"

    def list_parameter(self, key: str) -> list[str]:
        """A CommaDelimitedList parameter's items ("a,b"; moto shows "['a', 'b']")."""
        text = self.parameters.get(key, "").strip().strip("[]")
        return [item.strip().strip("'\"") for item in text.split(",") if item.strip()]

    def output(self, key: str) -> str:
        try:
            return self.outputs[key]
        except KeyError:
            raise CloudError(
                f"the stack {self.name} has no output {key}", "update it with `vsr cloud setup`"
            ) from None


EventCallback = Callable[[StackEvent], None]


def describe_stack(session: Any, name: str = DEFAULT_STACK_NAME) -> StackInfo | None:
    """The stack, or None when it does not exist (or was deleted)."""
    cfn = session.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise cloud_error("reading the stack", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("reading the stack", exc) from exc
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    stack = stacks[0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {
        p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])
    }
    return StackInfo(name=name, status=stack["StackStatus"], outputs=outputs, parameters=parameters)


def deploy_stack(
    session: Any,
    template_body: str,
    parameters: dict[str, str],
    name: str = DEFAULT_STACK_NAME,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
) -> StackInfo:
    """Create the stack, or update it in place; returns when CloudFormation is done."""
    cfn = session.client("cloudformation")
    existing = describe_stack(session, name)
    seen = _event_ids(cfn, name)
    try:
        if existing is None or existing.status == "ROLLBACK_COMPLETE":
            if existing is not None:  # a failed first create can only be deleted
                delete_stack(session, name, on_event, cancel, poll_seconds, timeout_seconds)
            cfn.create_stack(
                StackName=name,
                TemplateBody=template_body,
                Parameters=create_parameters(template_body, parameters),
                Capabilities=CAPABILITIES,
                OnFailure="ROLLBACK",
                Tags=[{"Key": "app", "Value": "vsr-desktop"}],
            )
        else:
            try:
                cfn.update_stack(
                    StackName=name,
                    TemplateBody=template_body,
                    Parameters=update_parameters(template_body, parameters, existing),
                    Capabilities=CAPABILITIES,
                )
            except ClientError as exc:
                if "No updates are to be performed" in str(exc):
                    return existing
                raise
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("deploying the stack", exc) from exc
    return _wait(
        session, name, seen, on_event, cancel, poll_seconds, timeout_seconds, deleting=False
    )


def create_parameters(template_body: str, given: dict[str, str]) -> list[dict[str, Any]]:
    """The given parameters and every other parameter's default, each named explicitly: so
    each has a recorded value that a later update can keep (moto's CloudFormation records
    only the parameters a request names; it also does not split a CommaDelimitedList
    default). AWS resolves the same values either way."""
    from vsr_desktop.backends.aws.stack_template import template_parameters

    values = dict(given)
    for key, spec in template_parameters(template_body).items():
        if key not in values and "Default" in spec:
            values[key] = str(spec["Default"])
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())]


def update_parameters(
    template_body: str, given: dict[str, str], existing: StackInfo
) -> list[dict[str, Any]]:
    """The given parameters, and UsePreviousValue for every other parameter the stack has
    now (a parameter new in this template takes its default: it has no previous value)."""
    from vsr_desktop.backends.aws.stack_template import template_parameters

    params: list[dict[str, Any]] = [
        {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(given.items())
    ]
    for key in sorted(template_parameters(template_body)):
        if key not in given and key in existing.parameters:
            params.append({"ParameterKey": key, "UsePreviousValue": True})
    return params


def delete_stack(
    session: Any,
    name: str = DEFAULT_STACK_NAME,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
) -> None:
    """Stop the stack's running work, delete the preview endpoint and the bucket (with every
    object version), then delete the stack and wait until it is gone."""
    from vsr_desktop.backends.aws.teardown import delete_bucket, release_billables

    info = describe_stack(session, name)
    if info is None:
        return
    release_billables(session, name, info.outputs, on_event, poll_seconds=poll_seconds)
    cfn = session.client("cloudformation")
    seen = _event_ids(cfn, name)
    try:
        cfn.delete_stack(StackName=name)
    except (ClientError, BotoCoreError) as exc:
        raise cloud_error("deleting the stack", exc) from exc
    _wait(session, name, seen, on_event, cancel, poll_seconds, timeout_seconds, deleting=True)
    bucket = info.outputs.get("BucketName")
    if bucket:  # gone with the stack, unless something kept it: then it goes now
        delete_bucket(session, bucket)


def empty_bucket(session: Any, bucket: str) -> int:
    """Delete every object version, delete marker and unfinished upload; returns how many
    object versions went. Lists again from the start after each batch (no paging through a
    listing that the deletes change), until nothing is left."""
    s3 = session.client("s3")
    removed = 0
    try:
        while True:
            page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
            keys = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if not keys:
                break
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            removed += len(page.get("Versions", []))
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return removed
        raise cloud_error("emptying the bucket", exc) from exc
    except BotoCoreError as exc:
        raise cloud_error("emptying the bucket", exc) from exc
    return removed


def _wait(
    session: Any,
    name: str,
    seen: set[str],
    on_event: EventCallback | None,
    cancel: threading.Event | None,
    poll_seconds: float,
    timeout_seconds: float,
    deleting: bool,
) -> StackInfo:
    """Report new stack events until the stack settles; a failure names its first cause."""
    cfn = session.client("cloudformation")
    failures: list[StackEvent] = []
    deadline = time.monotonic() + timeout_seconds
    while True:
        for event in _new_events(cfn, name, seen):
            if event.status.endswith("_FAILED") and event.reason:
                failures.append(event)
            if on_event is not None:
                on_event(event)
        info = describe_stack(session, name)
        if info is None:
            if deleting:
                return StackInfo(name=name, status="DELETE_COMPLETE", outputs={})
            raise CloudError(
                f"the stack {name} disappeared while it was being created",
                "look at the CloudFormation console, then run setup again",
            )
        if not info.status.endswith("_IN_PROGRESS"):
            if info.status in _DONE and not deleting:
                return info
            cause = failures[0].describe() if failures else info.status
            action = "deleting" if deleting else "deploying"
            raise CloudError(
                f"{action} the stack {name} failed: {cause}",
                "fix the cause (often a service quota or a missing permission), "
                "then run setup again",
            )
        if cancel is not None and cancel.is_set():
            raise CancelledError(
                "stopped watching the stack; CloudFormation carries on",
                "run setup again to follow it",
            )
        if time.monotonic() > deadline:
            raise CloudError(
                f"the stack {name} is still {info.status}", "look at the CloudFormation console"
            )
        if cancel is not None:
            cancel.wait(poll_seconds)
        else:
            time.sleep(poll_seconds)


def _stack_events(cfn: Any, name: str) -> list[dict[str, Any]]:
    try:
        return list(cfn.describe_stack_events(StackName=name).get("StackEvents", []))
    except ClientError:
        return []  # no such stack (yet, or any more)


def _event_ids(cfn: Any, name: str) -> set[str]:
    """Events from earlier deployments: by id, so a skewed local clock cannot hide new ones."""
    return {event["EventId"] for event in _stack_events(cfn, name)}


def _new_events(cfn: Any, name: str, seen: set[str]) -> list[StackEvent]:
    """Events not reported yet, oldest first."""
    fresh = []
    for event in _stack_events(cfn, name):
        stamp = event["Timestamp"]
        if event["EventId"] in seen:
            continue
        seen.add(event["EventId"])
        fresh.append(
            StackEvent(
                timestamp=stamp,
                resource=event.get("LogicalResourceId", ""),
                resource_type=event.get("ResourceType", ""),
                status=event.get("ResourceStatus", ""),
                reason=event.get("ResourceStatusReason", "") or "",
            )
        )
    return sorted(fresh, key=lambda e: e.timestamp)
