"""The one place a boto3 Session is made, and where credential failures become CredentialsError.

Credentials come from an AWS profile (static keys, SSO, assume-role: botocore resolves them),
from access keys kept in the OS keychain (keyring), or from botocore's default chain
(environment variables, instance role). Secrets never enter our settings file or our logs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions as bexc
import botocore.session

from vsr_desktop.backends.aws.errors import CloudError, CredentialsError

if TYPE_CHECKING:
    from vsr_desktop.core.settings import AppSettings

log = logging.getLogger(__name__)

KEYRING_SERVICE = "vsr-desktop-aws"
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


@dataclass(frozen=True)
class CloudCredentials:
    """Where the app's AWS credentials come from; holds names only, never a secret.

    `region` "" means the profile's (or environment's) default region. Set at most one of
    `profile` and `keychain_account`; with neither, botocore's default chain is used.
    """

    region: str
    profile: str | None = None
    keychain_account: str | None = None  # the label the access keys are kept under

    def __post_init__(self) -> None:
        if self.profile and self.keychain_account:
            raise CredentialsError(
                "Both an AWS profile and keychain access keys are chosen",
                "choose one of them in the cloud settings",
            )

    def to_settings(self) -> dict[str, str]:
        """The AppSettings fields this maps to (names only, safe to write to disk)."""
        return {
            "cloud_region": self.region,
            "cloud_profile": self.profile or "",
            "cloud_keychain_account": self.keychain_account or "",
        }

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> CloudCredentials:
        """Inverse of to_settings; accepts `dataclasses.asdict(app_settings)` as well."""
        return cls(
            region=str(values.get("cloud_region") or ""),
            profile=str(values.get("cloud_profile") or "") or None,
            keychain_account=str(values.get("cloud_keychain_account") or "") or None,
        )

    @classmethod
    def from_app_settings(cls, settings: AppSettings) -> CloudCredentials:
        return cls.from_settings(asdict(settings))

    def apply_to(self, settings: AppSettings) -> AppSettings:
        """A copy of `settings` with these choices in its cloud_* fields."""
        return replace(
            settings,
            cloud_region=self.region,
            cloud_profile=self.profile or "",
            cloud_keychain_account=self.keychain_account or "",
        )


# --- profiles -------------------------------------------------------------------------------


def aws_config() -> dict[str, Any]:
    """The AWS config + credentials files as botocore reads them; unreadable → CredentialsError."""
    # A bare botocore session: boto3.Session() would fail if AWS_PROFILE names a missing profile.
    try:
        return dict(botocore.session.Session().full_config)
    except bexc.ConfigParseError as exc:
        raise CredentialsError(
            f"The AWS config file could not be read: {exc}",
            "fix the file (see `aws configure list`)",
        ) from None


def _profiles_config() -> dict[str, dict[str, Any]]:
    profiles = aws_config().get("profiles", {})
    return profiles if isinstance(profiles, dict) else {}


def list_profiles() -> list[str]:
    """Every profile botocore knows (config and credentials files, SSO profiles included)."""
    return sorted(_profiles_config())


def is_sso_profile(name: str) -> bool:
    """True when the profile signs in through IAM Identity Center (SSO), legacy or sso-session."""
    profile = _profiles_config().get(name, {})
    return any(key in profile for key in ("sso_session", "sso_start_url", "sso_account_id"))


# --- access keys in the OS keychain --------------------------------------------------------


def _keyring_error(exc: Exception) -> CredentialsError:
    import keyring.errors

    if isinstance(exc, keyring.errors.NoKeyringError):
        return CredentialsError(
            "No OS keychain is available to keep the AWS access keys",
            "install or unlock the system keychain (GNOME Keyring / KWallet on Linux), "
            "or use an AWS profile instead (`aws configure` or `aws configure sso`)",
        )
    if isinstance(exc, keyring.errors.KeyringLocked):
        return CredentialsError(
            "The OS keychain is locked", "unlock it and try again, or use an AWS profile instead"
        )
    return CredentialsError(
        f"The OS keychain failed: {type(exc).__name__}", "try again, or use an AWS profile instead"
    )


def store_access_keys(account: str, access_key_id: str, secret_access_key: str) -> None:
    """Keep a long-term IAM access key pair in the OS keychain under `account`."""
    import keyring
    import keyring.errors

    key_id, secret = access_key_id.strip(), secret_access_key.strip()
    if not account.strip():
        raise CredentialsError("The keychain label is empty", "give the access keys a name")
    if not _ACCESS_KEY_ID.match(key_id) or not secret:
        raise CredentialsError(
            "That does not look like an AWS access key pair",
            "paste the access key ID (AKIA…) and its secret access key",
        )
    if key_id.startswith("ASIA"):
        raise CredentialsError(
            "Temporary (ASIA…) keys need a session token and expire",
            "use long-term IAM user keys, or an AWS profile / SSO sign-in instead",
        )
    payload = json.dumps({"access_key_id": key_id, "secret_access_key": secret})
    try:
        keyring.set_password(KEYRING_SERVICE, account, payload)
    except keyring.errors.KeyringError as exc:
        raise _keyring_error(exc) from None
    log.info("stored AWS access key %s in the keychain as %r", redact(key_id), account)


def forget_access_keys(account: str) -> None:
    """Remove the keys kept under `account`; forgetting absent keys is not an error."""
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(KEYRING_SERVICE, account)
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringError as exc:
        raise _keyring_error(exc) from None


def _load_access_keys(account: str) -> tuple[str, str]:
    import keyring
    import keyring.errors

    try:
        payload = keyring.get_password(KEYRING_SERVICE, account)
    except keyring.errors.KeyringError as exc:
        raise _keyring_error(exc) from None
    try:
        data: dict[str, Any] = json.loads(payload or "null")
        return str(data["access_key_id"]), str(data["secret_access_key"])
    except (ValueError, TypeError, KeyError):
        raise CredentialsError(
            f"No AWS access keys are stored under {account!r}",
            "enter the access keys again in the cloud settings",
        ) from None


# --- sessions -------------------------------------------------------------------------------


def open_session(creds: CloudCredentials) -> boto3.session.Session:
    """A boto3 Session from a profile, keychain keys, or the default chain (in that order)."""
    region = creds.region or None
    try:
        if creds.profile:
            session = boto3.session.Session(profile_name=creds.profile, region_name=region)
        elif creds.keychain_account:
            key_id, secret = _load_access_keys(creds.keychain_account)
            session = boto3.session.Session(
                aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
            )
        else:
            session = boto3.session.Session(region_name=region)
    except bexc.BotoCoreError as exc:
        raise as_credentials_error(exc, creds.profile) from None
    if not session.region_name:
        raise CloudError(
            "No AWS region is chosen", "pick a region in the cloud settings (e.g. eu-west-1)"
        )
    return session


_CODE_MESSAGES: dict[str, tuple[str, str]] = {
    "InvalidClientTokenId": (
        "AWS does not recognise this access key",
        "check the access key ID, or create a new key and enter it again",
    ),
    "UnrecognizedClientException": (
        "AWS does not recognise this access key",
        "check the access key ID, or create a new key",
    ),
    "InvalidAccessKeyId": (
        "AWS does not recognise this access key",
        "check the access key ID, or create a new key and enter it again",
    ),
    "SignatureDoesNotMatch": (
        "The secret access key does not match the access key ID",
        "enter the secret access key again",
    ),
    "ExpiredToken": (
        "The temporary AWS credentials have expired",
        "sign in again, or refresh the profile's credentials",
    ),
    "ExpiredTokenException": (
        "The temporary AWS credentials have expired",
        "sign in again, or refresh the profile's credentials",
    ),
    "AuthFailure": (
        "AWS did not accept these credentials",
        "check the access keys, or sign in again",
    ),
    "RequestExpired": (
        "AWS rejected the request as too old",
        "check that this computer's clock and time zone are right",
    ),
}


def as_credentials_error(exc: BaseException, profile: str | None = None) -> CredentialsError:
    """Translate a botocore credential failure into a CredentialsError saying what to do."""
    login = (
        f"sign in again (Sign in in the cloud settings, or `aws sso login --profile {profile}`)"
        if profile
        else "sign in again from the cloud settings"
    )
    if isinstance(exc, bexc.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message, hint = _CODE_MESSAGES.get(
            code,
            (
                f"AWS refused the credentials ({code})",
                "check the credentials in the cloud settings",
            ),
        )
        return CredentialsError(message, hint)
    if isinstance(
        exc, (bexc.UnauthorizedSSOTokenError, bexc.SSOTokenLoadError, bexc.TokenRetrievalError)
    ):
        return CredentialsError("The AWS SSO sign-in has expired or was never made", login)
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return CredentialsError(
            "No AWS credentials were found",
            "choose an AWS profile or enter access keys in the cloud settings",
        )
    if isinstance(exc, bexc.ProfileNotFound):
        return CredentialsError(
            f"The AWS profile {profile!r} does not exist",
            "choose another profile, or create it with `aws configure`",
        )
    if isinstance(exc, bexc.InvalidConfigError):
        return CredentialsError(
            f"The AWS profile is misconfigured: {redact(str(exc))}",
            "fix it in ~/.aws/config, or choose another profile",
        )
    return CredentialsError(
        f"AWS credentials could not be loaded: {redact(str(exc))}",
        "check the profile or keys in the cloud settings",
    )


_CREDENTIAL_ERRORS = (
    bexc.NoCredentialsError,
    bexc.PartialCredentialsError,
    bexc.SSOError,
    bexc.TokenRetrievalError,
    bexc.CredentialRetrievalError,
    bexc.ProfileNotFound,
    bexc.InvalidConfigError,
)


def check_credentials(session: boto3.session.Session) -> str:
    """Who these credentials are (STS GetCallerIdentity ARN); CredentialsError if nobody."""
    profile = session.profile_name if session.profile_name in session.available_profiles else None
    try:
        reply = session.client("sts").get_caller_identity()
    except bexc.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _CODE_MESSAGES or code.startswith(("Invalid", "Expired", "Unrecognized")):
            raise as_credentials_error(exc, profile) from None
        raise CloudError(
            f"AWS refused the identity check ({code})",
            "try again later, or check the account's status",
        ) from None
    except _CREDENTIAL_ERRORS as exc:
        raise as_credentials_error(exc, profile) from None
    except bexc.EndpointConnectionError:
        raise CloudError(
            "AWS cannot be reached", "check the internet connection and the region"
        ) from None
    arn = str(reply["Arn"])
    log.info("AWS credentials belong to %s", arn)
    return arn


# --- redaction ------------------------------------------------------------------------------

_SECRET_FIELDS = re.compile(
    r"(?i)((?:aws_)?secret_?access_?key|(?:aws_)?session_?token|security_?token|access_?token"
    r"|refresh_?token|client_?secret|device_?code|password)"
    r"(\"?\s*[:=]\s*\"?)([^\s\"',;}]+)"
)
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{100,}")
_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_KEY_ID = re.compile(r"\b((?:AKIA|ASIA)[A-Z0-9]{12})([A-Z0-9]{4})\b")


def _mask_secret_key(match: re.Match[str]) -> str:
    text = match.group(0)
    # A secret key mixes cases and digits; plain hex (sha1 digests) and words are left alone.
    mixed = re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"[0-9]", text)
    return "***" if mixed else text


def redact(text: str) -> str:
    """Mask what looks like an AWS secret, session or SSO token; shorten access key IDs.

    Errs on the side of masking: a 40-character run of mixed-case letters and digits
    (the shape of a secret access key) is masked even if it was something else.
    """
    text = _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _LONG_TOKEN.sub("***", text)
    text = _SECRET_KEY.sub(_mask_secret_key, text)
    return _KEY_ID.sub(lambda m: f"{m.group(1)[:4]}…{m.group(2)}", text)
