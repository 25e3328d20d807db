"""The AWS layer's errors: every boto3/botocore failure becomes one of these, with a hint."""

from __future__ import annotations

from vsr_desktop.core.errors import VsrError


class CloudError(VsrError):
    """Something went wrong talking to AWS (stack, upload, execution, download)."""

    exit_code = 8


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
    if code in _CREDENTIAL_CODES:
        return CredentialsError(
            f"AWS refused {action}: {exc}",
            "check the profile or keys in the cloud settings, or sign in again",
        )
    return CloudError(
        f"AWS error while {action}: {exc}",
        "try again in a minute; if it persists, check the AWS console",
    )
