"""Sign in to an SSO (IAM Identity Center) profile from the app, as `aws sso login` does.

OAuth device authorisation: register a public client, show the user a URL and code, poll
CreateToken until they approve, then write the token where botocore looks for it
(~/.aws/sso/cache/<sha1>.json), so every boto3 Session with that profile then works — and
the AWS CLI shares the sign-in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import botocore.exceptions as bexc
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config

from vsr_desktop.backends.aws.errors import CloudError, CredentialsError
from vsr_desktop.backends.aws.session import aws_config
from vsr_desktop.core.atomic_file import write_text_atomic
from vsr_desktop.core.errors import CancelledError

log = logging.getLogger(__name__)

CLIENT_NAME = "vsr-desktop"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPES = ("sso:account:access",)  # what the AWS CLI asks for on sso-session profiles
SLOW_DOWN_STEP_S = 5.0  # RFC 8628 §3.5: add 5 s to the interval on slow_down
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the format botocore writes and parses in the cache


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def default_cache_dir() -> Path:
    """botocore's SSO token cache (expanded now, so a changed HOME is honoured)."""
    return Path(os.path.expanduser(os.path.join("~", ".aws", "sso", "cache")))


@dataclass(frozen=True)
class SsoConfig:
    """What a profile says about its SSO sign-in."""

    profile: str
    start_url: str
    region: str
    session_name: str | None = None  # set for sso-session profiles, None for legacy ones
    scopes: tuple[str, ...] = ()

    def cache_file(self, cache_dir: Path | None = None) -> Path:
        """botocore's rule: sha1 of the sso-session name, or of the start URL for legacy."""
        key = self.session_name if self.session_name is not None else self.start_url
        name = hashlib.sha1(key.encode("utf-8")).hexdigest() + ".json"
        return (cache_dir or default_cache_dir()) / name


def read_sso_config(profile: str) -> SsoConfig:
    """The profile's start URL, SSO region and sso-session, from the AWS config file."""
    config = aws_config()
    section = config.get("profiles", {}).get(profile)
    if section is None:
        raise CredentialsError(
            f"The AWS profile {profile!r} does not exist", "create it with `aws configure sso`"
        )
    session_name = section.get("sso_session")
    if session_name is not None:
        sso = config.get("sso_sessions", {}).get(session_name)
        if sso is None:
            raise CredentialsError(
                f"The sso-session {session_name!r} of profile {profile!r} is missing",
                "add it to ~/.aws/config (`aws configure sso`)",
            )
        raw_scopes = sso.get("sso_registration_scopes", "")
        scopes = tuple(s.strip() for s in raw_scopes.split(",") if s.strip()) or DEFAULT_SCOPES
    else:
        sso, scopes = section, ()
    if "sso_start_url" not in sso or "sso_region" not in sso:
        raise CredentialsError(
            f"The AWS profile {profile!r} is not set up for SSO",
            "run `aws configure sso`, or choose another profile",
        )
    return SsoConfig(profile, sso["sso_start_url"], sso["sso_region"], session_name, scopes)


@dataclass(frozen=True)
class DeviceAuthorization:
    """What the user must do (open the URL, check the code) and what polling needs."""

    config: SsoConfig
    verification_uri: str
    verification_uri_complete: str
    user_code: str
    expires_at: datetime
    interval: float
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    client_expires_at: datetime = field(repr=False)
    device_code: str = field(repr=False)


def oidc_client(region: str) -> Any:
    """An unsigned sso-oidc client: these calls need no AWS credentials."""
    session = botocore.session.Session()
    return session.create_client(
        "sso-oidc", region_name=region, config=Config(signature_version=UNSIGNED)
    )


def _fail(exc: bexc.ClientError, what: str) -> CloudError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return CloudError(
        f"SSO sign-in failed while {what} ({code})",
        "check the profile's start URL and SSO region, then try again",
    )


def start_login(
    profile: str, client: Any = None, now: Callable[[], datetime] = _utc_now
) -> DeviceAuthorization:
    """Register the app and start device authorisation; the user then approves in a browser."""
    config = read_sso_config(profile)
    client = client or oidc_client(config.region)
    try:
        register_args: dict[str, Any] = {"clientName": CLIENT_NAME, "clientType": "public"}
        if config.scopes:
            register_args["scopes"] = list(config.scopes)
        reg = client.register_client(**register_args)
        dev = client.start_device_authorization(
            clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=config.start_url
        )
    except bexc.ClientError as exc:
        raise _fail(exc, "starting") from None
    except bexc.EndpointConnectionError:
        raise CloudError(
            "AWS SSO cannot be reached",
            "check the internet connection and the profile's SSO region",
        ) from None
    started = now()
    uri = dev["verificationUri"]
    return DeviceAuthorization(
        config=config,
        verification_uri=uri,
        verification_uri_complete=dev.get("verificationUriComplete", uri),
        user_code=dev["userCode"],
        expires_at=started + timedelta(seconds=int(dev["expiresIn"])),
        interval=float(dev.get("interval") or 5),
        client_id=reg["clientId"],
        client_secret=reg["clientSecret"],
        client_expires_at=datetime.fromtimestamp(int(reg["clientSecretExpiresAt"]), timezone.utc),
        device_code=dev["deviceCode"],
    )


def wait_for_token(
    auth: DeviceAuthorization,
    cancel: threading.Event | None = None,
    *,
    client: Any = None,
    cache_dir: Path | None = None,
    now: Callable[[], datetime] = _utc_now,
) -> Path:
    """Poll until the user approves, then write botocore's token cache file; returns its path.

    Raises CancelledError when `cancel` is set, CredentialsError when the code expires or
    the user denies access. Waiting is `cancel.wait(interval)`, so cancel takes effect at once.
    """
    cancel = cancel or threading.Event()
    client = client or oidc_client(auth.config.region)
    interval = auth.interval
    while True:
        if now() >= auth.expires_at:
            raise CredentialsError(
                "The sign-in code expired before it was approved", "start the SSO sign-in again"
            )
        try:
            reply = client.create_token(
                grantType=DEVICE_GRANT,
                deviceCode=auth.device_code,
                clientId=auth.client_id,
                clientSecret=auth.client_secret,
            )
            break
        except client.exceptions.AuthorizationPendingException:
            pass
        except client.exceptions.SlowDownException:
            interval += SLOW_DOWN_STEP_S
        except client.exceptions.ExpiredTokenException:
            raise CredentialsError(
                "The sign-in code expired before it was approved", "start the SSO sign-in again"
            ) from None
        except client.exceptions.AccessDeniedException:
            raise CredentialsError(
                "The SSO sign-in was denied", "start it again and choose Allow in the browser"
            ) from None
        except bexc.ClientError as exc:
            raise _fail(exc, "waiting for approval") from None
        if cancel.wait(interval):
            raise CancelledError("SSO sign-in cancelled")
    path = auth.config.cache_file(cache_dir)
    write_text_atomic(path, json.dumps(_token_record(auth, reply, now())))
    log.info("SSO sign-in for profile %s done; token cached in %s", auth.config.profile, path)
    return path


def _token_record(
    auth: DeviceAuthorization, reply: dict[str, Any], issued: datetime
) -> dict[str, str]:
    """The JSON botocore's SSOTokenLoader / SSOTokenProvider read back (AWS CLI v2's fields)."""
    expires = issued + timedelta(seconds=int(reply["expiresIn"]))
    record = {
        "startUrl": auth.config.start_url,
        "region": auth.config.region,
        "accessToken": reply["accessToken"],
        "expiresAt": expires.strftime(_TIME_FORMAT),
    }
    if auth.config.session_name is not None:
        # sso-session profiles refresh the token themselves with the registration.
        record.update(
            clientId=auth.client_id,
            clientSecret=auth.client_secret,
            registrationExpiresAt=auth.client_expires_at.strftime(_TIME_FORMAT),
        )
        if reply.get("refreshToken"):
            record["refreshToken"] = reply["refreshToken"]
    return record
