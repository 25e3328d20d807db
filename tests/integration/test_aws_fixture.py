"""The moto server fixture itself: real HTTP, per-test reset, subprocesses see it too."""

from __future__ import annotations

import subprocess
import sys

import boto3

from tests.helpers.aws_fixture import MotoServer


def test_buckets_live_on_the_server_and_vanish_after_reset(aws: MotoServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="vsr-b1", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    # A subprocess inherits AWS_ENDPOINT_URL and sees the same bucket over HTTP.
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import boto3; print([b['Name'] for b in "
            "boto3.client('s3').list_buckets()['Buckets']])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "vsr-b1" in listed.stdout
    aws.reset()
    assert boto3.client("s3").list_buckets()["Buckets"] == []
