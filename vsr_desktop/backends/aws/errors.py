"""The AWS layer's errors: every boto3/botocore failure becomes one of these, with a hint."""

from __future__ import annotations

from vsr_desktop.core.errors import VsrError


class CloudError(VsrError):
    """Something went wrong talking to AWS (stack, upload, execution, download)."""

    exit_code = 8


class CredentialsError(CloudError):
    """No, wrong or expired AWS credentials: the user has to sign in again or fix a profile."""

    exit_code = 9
