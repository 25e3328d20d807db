"""The AWS layer's errors: every boto3/botocore failure becomes one of these, with a hint.

botocore's messages quote the service's reply, and a reply (from a proxy, a misbehaving or a
fake endpoint) may echo the request: headers, presigned URLs, the credentials themselves.
So a CloudError masks credentials in its message and hint when it is made, whoever makes
it: the text is safe to print, store in the job record and log (core/redact.py).
"""

from __future__ import annotations

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.redact import redact_secrets


class CloudError(VsrError):
    """Something went wrong talking to AWS (stack, upload, execution, download)."""

    exit_code = 8

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(redact_secrets(message), redact_secrets(hint))


class CredentialsError(CloudError):
    """No, wrong or expired AWS credentials: the user has to sign in again or fix a profile."""

    exit_code = 9


_CREDENTIAL_CODES = {
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAccessKeyId",
}


def cloud_error(action: str, exc: Exception) -> CloudError:
    """A botocore exception → one line for the user; credential problems get their own hint."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return CredentialsError(
            f"no AWS credentials for {action}",
            "pick a profile or enter access keys in the cloud settings",
        )
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    text = redact_secrets(str(exc))
    if code in _CREDENTIAL_CODES:
        return CredentialsError(
            f"AWS refused {action}: {text}",
            "check the profile or keys in the cloud settings, or sign in again",
        )
    return CloudError(
        f"AWS error while {action}: {text}",
        "try again in a minute; if it persists, check the AWS console",
    )


def result_read_error(action: str, exc: Exception, bucket: str, key: str) -> CloudError:
    """A failed read of a job's result: a missing object says so (the job may not have
    finished, or its files expired); anything else as :func:`cloud_error`."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in {
        "404",
        "NoSuchKey",
    }:
        return CloudError(
            f"s3://{bucket}/{key} does not exist",
            "the job may not have finished, or its files expired",
        )
    return cloud_error(action, exc)
