"""Mask credentials in text that is about to be shown, stored or logged.

Error text from AWS (botocore puts the service's reply into its messages, and a service, a
proxy or a fake endpoint may echo the request: headers, presigned URLs, the credentials) and
from ssh reaches the terminal, the job store and logs. Everything that carries such text
passes it through ``redact_secrets`` first. It errs on the side of masking: a 40-character
mixed-case run is masked even if it was not a secret key.

Here in core (no boto3) so the AWS backend, the Slurm/SSH backend and the CLI share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# Header or field name, separator, value to the end of the quoted string / line.
_HEADERS = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-amz-security-token|x-amz-credential"
    r"|x-amz-signature|x-amz-content-sha256|cookie|set-cookie)"
    r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\"'\r\n\\]+)"
)
# Presigned URLs and query strings: the signature, the credential scope, the token.
_QUERY = re.compile(
    r"(?i)([?&;](?:x-amz-security-token|x-amz-credential|x-amz-signature|signature"
    r"|awsaccesskeyid|security-token|token|access_token|password)=)([^&\s\"'<>#]+)"
)
# Named fields: JSON/INI/env/repr forms (`"SecretAccessKey": "…"`, `aws_session_token = …`).
_FIELDS = re.compile(
    r"(?i)(\b(?:aws_)?secret_?access_?key|\b(?:aws_)?session_?token|\bsecurity_?token"
    r"|\baccess_?token|\brefresh_?token|\bid_?token|\bclient_?secret|\bdevice_?code"
    r"|\bpassword|\bpasswd|\bsecret)"
    r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\s\"',;}\\]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{4,})")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^/\s@]+)(@)")
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9/+=%])(?:[A-Za-z0-9/+=]|%2[FBfb]|%3[Dd]){100,}")
_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_KEY_ID = re.compile(r"\b((?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12})([A-Z0-9]{4})\b")


def _mask_secret_key(match: re.Match[str]) -> str:
    text = match.group(0)
    # A secret key mixes cases and digits; plain hex digests and words are left alone.
    mixed = re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"[0-9]", text)
    return MASK if mixed else text


def redact_secrets(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with credentials masked: the ``known`` values (4 characters or more), AWS
    access key IDs shortened (``AKIA…MPLE``), secret keys, session/bearer tokens, signed URL
    query values, Authorization and X-Amz-* header values, passwords in URLs."""
    for secret in sorted({s for s in known if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _HEADERS.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _QUERY.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _FIELDS.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    text = _LONG_TOKEN.sub(MASK, text)
    text = _SECRET_KEY.sub(_mask_secret_key, text)
    return _KEY_ID.sub(lambda m: f"{m.group(1)[:4]}…{m.group(2)}", text)
