"""AWS and ssh error text never shows credentials: a real endpoint that echoes them.

A tiny HTTP server on localhost plays AWS (boto3 reaches it through AWS_ENDPOINT_URL): STS
answers who we are, every other call fails with an error whose message echoes the request's
headers (Authorization with the signature, X-Amz-Security-Token), the access key, secret key
and session token, and a presigned URL. Before issue 16 `vsr cloud status` printed the
session token from such a reply; now neither the CLI's output nor the job record holds any.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from vsr_desktop.backends import slurm_remote
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.redact import redact_secrets

KEY_ID = "ASIAQWERTYUIOPASDFGH"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEK9"
TOKEN = (
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6"
    + "Zm9vYmFyYmF6cXV4" * 20
    + "+AbC/dEf=="
)
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


def _secrets() -> list[str]:
    return [KEY_ID, SECRET, TOKEN, urllib.parse.quote(TOKEN, safe=""), SIGNATURE]


class _EchoingAws(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if "GetCallerIdentity" in body:
            reply = (
                "<GetCallerIdentityResponse><GetCallerIdentityResult>"
                "<Arn>arn:aws:iam::123456789012:user/test</Arn><UserId>X</UserId>"
                "<Account>123456789012</Account></GetCallerIdentityResult>"
                "</GetCallerIdentityResponse>"
            )
            return self._send(200, reply)
        presigned = (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={KEY_ID}%2F20261201%2Fus-east-1%2Fs3%2Faws4_request"
            f"&X-Amz-Security-Token={urllib.parse.quote(TOKEN, safe='')}"
            f"&X-Amz-Signature={SIGNATURE}"
        )
        echo = (
            f"request headers {dict(self.headers)!r}; "
            f"credentials aws_access_key_id={KEY_ID} aws_secret_access_key={SECRET} "
            f"aws_session_token={TOKEN}; bare {SECRET} and {TOKEN}; url {presigned}; "
            f"Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/x, Signature={SIGNATURE}"
        )
        reply = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
            f"<Message>{escape(echo)}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
        )
        self._send(400, reply)

    def _send(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def echoing_endpoint(tmp_path: Path) -> Iterator[dict[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VSR_SERVE"))}
    env.update(
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_SESSION_TOKEN=TOKEN,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_MAX_ATTEMPTS="1",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    try:
        yield env
    finally:
        server.shutdown()
        server.server_close()


def _assert_clean(text: str) -> None:
    for secret in _secrets():
        assert secret not in text, f"{secret[:12]}… leaked: {text[:3000]}"


def test_cli_prints_the_aws_error_without_credentials(echoing_endpoint: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vsr_desktop.cli", "cloud", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        env=echoing_endpoint,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 8, output
    assert "ValidationError" in output and "***" in output  # the error itself is still told
    assert "Traceback" not in output
    _assert_clean(output)


def test_job_record_keeps_the_aws_error_without_credentials(
    echoing_endpoint: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw botocore error (not yet a CloudError) that fails a job goes into its record."""
    import boto3
    from botocore.exceptions import ClientError

    from vsr_desktop.backends.aws.backend import AwsBackend
    from vsr_desktop.backends.aws.errors import cloud_error

    for name, value in echoing_endpoint.items():
        monkeypatch.setenv(name, value)
    session = boto3.Session()
    with pytest.raises(ClientError) as caught:
        session.client("cloudformation").describe_stacks(StackName="vsr-desktop")
    assert TOKEN in str(caught.value)  # the endpoint really echoed it: the test bites

    _assert_clean(cloud_error("reading the stack", caught.value).user_message())

    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add(JobRecord(id="job1", name="x", backend="aws", source="a", output="b"))
    backend = AwsBackend(store, session)
    backend._fail("job1", caught.value)
    job = store.get("job1")
    assert job.state == JobState.FAILED and "ValidationError" in job.message
    _assert_clean(job.message)
    _assert_clean(b"".join(p.read_bytes() for p in tmp_path.glob("jobs.sqlite3*")).decode("latin1"))


def test_ssh_error_text_never_repeats_an_ssh_env_value() -> None:
    password = "pa55-w0rd!"
    text = (
        f"ssh: connect failed; remote said: SLURM_JWT={TOKEN} DB_PASSWORD={password} "
        f"Authorization: Bearer {TOKEN}"
    )
    redacted = slurm_remote.redact(text, [password, "abc"])
    assert password not in redacted and TOKEN not in redacted
    assert "abc" not in [w for w in redacted.split()]  # short values are not masked: no-op
    assert "ssh: connect failed" in redacted


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (
            f"Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/x, Signature={SIGNATURE}",
            SIGNATURE,
        ),
        (f"'X-Amz-Security-Token': '{TOKEN}'", TOKEN),
        (f'{{"SecretAccessKey": "{SECRET}", "SessionToken": "{TOKEN}"}}', SECRET),
        (f"https://h/k?X-Amz-Signature={SIGNATURE}&Signature=abcd1234", SIGNATURE),
        (f"key {KEY_ID} here", KEY_ID),
        ("https://user:pa55word@proxy.example:3128/", "pa55word"),
        ("Bearer abcdef0123456789", "abcdef0123456789"),
    ],
)
def test_redaction_patterns(text: str, gone: str) -> None:
    assert gone not in redact_secrets(text)
