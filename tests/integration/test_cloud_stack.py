"""Deploying and tearing down the real template through moto's CloudFormation over HTTP."""

from __future__ import annotations

import boto3
import pytest

from tests.helpers.aws_fixture import MotoServer
from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.stack import StackEvent, delete_stack, deploy_stack, describe_stack

# moto's CloudFormation does not split a CommaDelimitedList default (see test_cloud_template).
LISTS = {
    key: tpl.parameter_defaults()[key]
    for key in (tpl.PARAM_GPU_INSTANCE_TYPES, tpl.PARAM_CPU_INSTANCE_TYPES)
}


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.*:UserWarning")
def test_deploy_reports_events_and_a_second_deploy_changes_nothing(aws: MotoServer) -> None:
    session = boto3.session.Session()
    assert describe_stack(session, "vsr-life") is None
    events: list[StackEvent] = []
    info = deploy_stack(
        session, tpl.template_body(), LISTS, "vsr-life", on_event=events.append, poll_seconds=0.1
    )
    assert info.status == "CREATE_COMPLETE" and set(info.outputs) == set(tpl.OUTPUT_KEYS)
    assert info.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) == LISTS[
        tpl.PARAM_GPU_INSTANCE_TYPES
    ].split(",")
    # moto records stack-level events only (AWS adds one per resource): in order, once each.
    assert [(e.resource, e.status) for e in events] == [
        ("vsr-life", "CREATE_IN_PROGRESS"),
        ("vsr-life", "CREATE_COMPLETE"),
    ]

    again: list[StackEvent] = []
    same = deploy_stack(
        session, tpl.template_body(), LISTS, "vsr-life", on_event=again.append, poll_seconds=0.1
    )
    assert same.outputs == info.outputs
    assert not [e for e in again if e.resource == "vsr-life" and "CREATE" in e.status]


BUCKET_STACK = """{"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
 "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}}}"""


def test_teardown_empties_the_bucket_then_deletes_the_stack(aws: MotoServer) -> None:
    """CloudFormation refuses to delete a bucket that holds files, so teardown empties it.

    A bucket-only stack: moto deletes the real template's VPC before its subnets and fails
    (DependencyViolation), an ordering real CloudFormation gets right.
    """
    session = boto3.session.Session()
    info = deploy_stack(session, BUCKET_STACK, {}, "vsr-bye", poll_seconds=0.1)
    bucket = info.output("BucketName")
    s3 = session.client("s3")
    s3.put_object(Bucket=bucket, Key="jobs/x/output/a.mp4", Body=b"video")
    s3.create_multipart_upload(Bucket=bucket, Key="jobs/y/input/source.mp4")
    delete_stack(session, "vsr-bye", poll_seconds=0.1)
    assert describe_stack(session, "vsr-bye") is None
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    delete_stack(session, "vsr-bye", poll_seconds=0.1)  # gone already: nothing to do


def test_stack_outputs_missing_is_a_clear_error(aws: MotoServer) -> None:
    session = boto3.session.Session()
    session.client("cloudformation").create_stack(
        StackName="bare", TemplateBody='{"Resources": {"L": {"Type": "AWS::Logs::LogGroup"}}}'
    )
    info = describe_stack(session, "bare")
    assert info is not None and info.ready
    with pytest.raises(CloudError, match="no output BucketName"):
        info.output("BucketName")
