"""AWS credentials: profiles, keychain keys, identity checks, SSO device login, redaction.

The identity checks run against the session's moto server over HTTP. For the wrong-key
paths moto's own key and signature checking is switched on (`/moto-api/reset-auth`), so
AWS-shaped refusals come back for real. Only what nothing here can reach is stubbed with
botocore's Stubber: an expired STS session token (moto never expires one) and the
IAM Identity Center device login (the real sso-oidc service).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest
from botocore.stub import Stubber
from botocore.tokens import SSOTokenProvider
from botocore.utils import JSONFileCache, SSOTokenLoader

from tests.helpers.aws_fixture import MotoServer
from tests.helpers.memory_keyring import MemoryKeyring
from vsr_desktop.backends.aws import sso_login
from vsr_desktop.backends.aws.errors import CloudError, CredentialsError
from vsr_desktop.backends.aws.session import (
    KEYRING_SERVICE,
    CloudCredentials,
    check_credentials,
    forget_access_keys,
    is_sso_profile,
    list_profiles,
    open_session,
    redact,
    store_access_keys,
)
from vsr_desktop.core.errors import CancelledError
from vsr_desktop.core.settings import AppSettings, SettingsFile

REGION = "eu-west-1"
START_URL = "https://example-corp.awsapps.com/start"


@pytest.fixture()
def iam_keys(aws: MotoServer) -> tuple[str, str]:
    """A real IAM user's access key pair, made in moto."""
    iam = boto3.client("iam")
    iam.create_user(UserName="vsr-editor")
    key = iam.create_access_key(UserName="vsr-editor")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _reset_auth(server: MotoServer, count: bytes) -> None:
    request = urllib.request.Request(
        server.url + "/moto-api/reset-auth",
        data=count,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        reply.read()


@pytest.fixture()
def moto_checks_keys(aws: MotoServer, iam_keys: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """From here on moto verifies access keys and signatures as AWS does."""
    _reset_auth(aws, b"0")
    try:
        yield iam_keys
    finally:
        _reset_auth(aws, b"inf")


def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def _aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "aws-config"
    config.write_text(f"""\
[default]
region = {REGION}

[profile plain]
region = {REGION}

[profile legacy-sso]
sso_start_url = {START_URL}
sso_region = {REGION}
sso_account_id = 123456789012
sso_role_name = Editor
region = {REGION}

[profile corp]
sso_session = corp-sso
sso_account_id = 123456789012
sso_role_name = Editor
region = {REGION}

[sso-session corp-sso]
sso_start_url = {START_URL}
sso_region = {REGION}
""")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[keys-only]\naws_access_key_id = AKIAEXAMPLEEXAMPLE12\n"
        "aws_secret_access_key = notarealsecret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    return config


# --- settings and profiles -------------------------------------------------------------------


def test_credentials_round_trip_through_settings_without_secrets() -> None:
    creds = CloudCredentials(region=REGION, keychain_account="studio")
    values = creds.to_settings()
    assert values == {
        "cloud_region": REGION,
        "cloud_profile": "",
        "cloud_keychain_account": "studio",
    }
    settings = creds.apply_to(AppSettings())
    assert asdict(settings).items() >= values.items()
    assert CloudCredentials.from_settings(asdict(settings)) == creds
    assert CloudCredentials.from_app_settings(settings) == creds
    assert CloudCredentials.from_app_settings(AppSettings()) == CloudCredentials(region="")
    with pytest.raises(CredentialsError, match="Both"):
        CloudCredentials(region=REGION, profile="plain", keychain_account="studio")


def test_profiles_come_from_the_config_and_credentials_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws_config(tmp_path, monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # must not break listing
    assert list_profiles() == ["corp", "default", "keys-only", "legacy-sso", "plain"]
    assert is_sso_profile("corp") and is_sso_profile("legacy-sso")
    assert not is_sso_profile("plain") and not is_sso_profile("keys-only")
    assert not is_sso_profile("missing")
    (tmp_path / "aws-config").write_text("[profile broken\nregion = eu-west-1\n")
    with pytest.raises(CredentialsError, match="config file"):
        list_profiles()


# --- keychain --------------------------------------------------------------------------------


def test_keys_live_only_in_the_keychain(memory_keyring: MemoryKeyring) -> None:
    store_access_keys(
        "studio", " AKIAIOSFODNN7EXAMPLE ", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    )
    stored = json.loads(memory_keyring.items[(KEYRING_SERVICE, "studio")])
    assert stored == {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    forget_access_keys("studio")
    forget_access_keys("studio")  # forgetting twice is fine
    assert memory_keyring.items == {}
    with pytest.raises(CredentialsError, match="No AWS access keys are stored"):
        open_session(CloudCredentials(region=REGION, keychain_account="studio"))
    with pytest.raises(CredentialsError, match="does not look like"):
        store_access_keys("studio", "not a key", "secret")
    with pytest.raises(CredentialsError, match="Temporary"):
        store_access_keys("studio", "ASIAIOSFODNN7EXAMPLE", "secret")


def test_no_keychain_backend_is_a_clear_error() -> None:
    before = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(CredentialsError) as caught:
            store_access_keys("studio", "AKIAIOSFODNN7EXAMPLE", "secret")
        assert "keychain" in caught.value.message
        assert "AWS profile" in caught.value.hint
        with pytest.raises(CredentialsError, match="keychain"):
            open_session(CloudCredentials(region=REGION, keychain_account="studio"))
    finally:
        keyring.set_keyring(before)


# --- identity checks against moto -----------------------------------------------------------


def test_default_chain_reaches_moto(aws: MotoServer) -> None:
    session = open_session(CloudCredentials(region=REGION))
    assert session.region_name == REGION
    assert check_credentials(session).startswith("arn:aws:")


def test_keychain_keys_are_the_ones_used(
    memory_keyring: MemoryKeyring,
    moto_checks_keys: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_env_keys(monkeypatch)
    key_id, secret = moto_checks_keys
    store_access_keys("studio", key_id, secret)
    session = open_session(CloudCredentials(region=REGION, keychain_account="studio"))
    assert check_credentials(session) == "arn:aws:iam::123456789012:user/vsr-editor"


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("secret", "secret access key does not match"),
        ("key_id", "does not recognise this access key"),
    ],
)
def test_wrong_keys_are_credentials_errors(
    memory_keyring: MemoryKeyring,
    moto_checks_keys: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    message: str,
) -> None:
    _no_env_keys(monkeypatch)
    key_id, secret = moto_checks_keys
    if which == "secret":
        secret = secret[::-1]
    else:
        key_id = "AKIA" + "Z" * 16
    store_access_keys("studio", key_id, secret)
    session = open_session(CloudCredentials(region=REGION, keychain_account="studio"))
    with pytest.raises(CredentialsError, match=message) as caught:
        check_credentials(session)
    assert caught.value.hint


def test_no_credentials_anywhere(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_env_keys(monkeypatch)
    session = open_session(CloudCredentials(region=REGION))
    with pytest.raises(CredentialsError, match="No AWS credentials") as caught:
        check_credentials(session)
    assert "profile" in caught.value.hint


def test_missing_region_and_profile(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws_config(tmp_path, monkeypatch)
    with pytest.raises(CredentialsError, match="does not exist"):
        open_session(CloudCredentials(region=REGION, profile="nope"))
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var)
    with pytest.raises(CloudError, match="region"):
        open_session(CloudCredentials(region="", profile="keys-only"))
    assert open_session(CloudCredentials(region="", profile="plain")).region_name == REGION


def test_expired_session_token_stubbed(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stubber: moto never expires an STS session token, so AWS's ExpiredToken is stubbed."""
    session = open_session(CloudCredentials(region=REGION))
    sts = session.client("sts")
    stub = Stubber(sts)
    stub.add_client_error(
        "get_caller_identity",
        service_error_code="ExpiredToken",
        service_message="The security token included in the request is expired",
        http_status_code=403,
    )
    monkeypatch.setattr(session, "client", lambda *args, **kwargs: sts)
    with stub, pytest.raises(CredentialsError, match="expired") as caught:
        check_credentials(session)
    assert "sign in again" in caught.value.hint
    stub.assert_no_pending_responses()


@pytest.fixture()
def sso_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point botocore's SSO token cache (fixed at import, under ~/.aws) at a test folder."""
    from botocore.credentials import SSOProvider

    cache = tmp_path / "sso-cache"
    monkeypatch.setattr(SSOProvider, "_SSO_TOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(SSOTokenProvider, "_SSO_TOKEN_CACHE_DIR", str(cache))
    return cache


def test_expired_or_missing_sso_sign_in(
    aws: MotoServer, tmp_path: Path, sso_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's real SSO providers read the cache; no sign-in → CredentialsError + hint."""
    _aws_config(tmp_path, monkeypatch)
    _no_env_keys(monkeypatch)
    session = open_session(CloudCredentials(region=REGION, profile="corp"))
    with pytest.raises(CredentialsError, match="SSO sign-in") as caught:
        check_credentials(session)  # no token cached at all
    assert "aws sso login --profile corp" in caught.value.hint

    sso_cache.mkdir()
    expired = {
        "startUrl": START_URL,
        "region": REGION,
        "accessToken": "old",
        "expiresAt": "2020-01-01T00:00:00Z",
    }
    legacy_file = hashlib.sha1(START_URL.encode()).hexdigest() + ".json"
    (sso_cache / legacy_file).write_text(json.dumps(expired))
    session = open_session(CloudCredentials(region=REGION, profile="legacy-sso"))
    with pytest.raises(CredentialsError, match="SSO sign-in") as caught:
        check_credentials(session)
    assert "legacy-sso" in caught.value.hint


# --- SSO device login ------------------------------------------------------------------------


def _stubbed_oidc(config: sso_login.SsoConfig) -> tuple[object, Stubber]:
    client = sso_login.oidc_client(config.region)
    return client, Stubber(client)


def _start(stub: Stubber, config: sso_login.SsoConfig, now: datetime, interval: int = 1) -> None:
    register = {"clientName": "vsr-desktop", "clientType": "public"}
    if config.scopes:
        register["scopes"] = list(config.scopes)  # type: ignore[assignment]
    stub.add_response(
        "register_client",
        {
            "clientId": "client-1",
            "clientSecret": "client-secret-xyz",
            "clientIdIssuedAt": int(now.timestamp()),
            "clientSecretExpiresAt": int((now + timedelta(days=90)).timestamp()),
        },
        register,
    )
    stub.add_response(
        "start_device_authorization",
        {
            "deviceCode": "device-1",
            "userCode": "ABCD-EFGH",
            "verificationUri": "https://device.sso.eu-west-1.amazonaws.com/",
            "verificationUriComplete": "https://device.sso.eu-west-1.amazonaws.com/?user_code=ABCD-EFGH",
            "expiresIn": 600,
            "interval": interval,
        },
        {"clientId": "client-1", "clientSecret": "client-secret-xyz", "startUrl": START_URL},
    )


class RecordingEvent(threading.Event):
    """Records each poll delay and returns at once, so the polling schedule is checked fast."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return self.is_set()


def test_sso_session_login_writes_the_token_botocore_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stubber stands in for AWS IAM Identity Center (unreachable here); botocore's own
    SSOTokenLoader and SSOTokenProvider then read the file for real."""
    _aws_config(tmp_path, monkeypatch)
    config = sso_login.read_sso_config("corp")
    assert config == sso_login.SsoConfig(
        "corp", START_URL, REGION, "corp-sso", ("sso:account:access",)
    )
    client, stub = _stubbed_oidc(config)
    now = datetime.now(timezone.utc)
    _start(stub, config, now)
    token_args = {
        "grantType": sso_login.DEVICE_GRANT,
        "deviceCode": "device-1",
        "clientId": "client-1",
        "clientSecret": "client-secret-xyz",
    }
    for code in (
        "AuthorizationPendingException",
        "SlowDownException",
        "AuthorizationPendingException",
    ):
        stub.add_client_error("create_token", code, expected_params=token_args)
    stub.add_response(
        "create_token",
        {
            "accessToken": "sso-access-token",
            "tokenType": "Bearer",
            "expiresIn": 28800,
            "refreshToken": "sso-refresh",
        },
        token_args,
    )
    cache = tmp_path / "sso-cache"
    events = RecordingEvent()
    with stub:
        auth = sso_login.start_login("corp", client=client)
        assert auth.user_code == "ABCD-EFGH"
        assert auth.verification_uri_complete.endswith("user_code=ABCD-EFGH")
        assert "client-secret" not in repr(auth) and "device-1" not in repr(auth)
        path = sso_login.wait_for_token(auth, events, client=client, cache_dir=cache)
    stub.assert_no_pending_responses()
    assert events.waits == [1.0, 1.0 + sso_login.SLOW_DOWN_STEP_S, 1.0 + sso_login.SLOW_DOWN_STEP_S]
    assert path == cache / (hashlib.sha1(b"corp-sso").hexdigest() + ".json")

    loaded = SSOTokenLoader(cache=JSONFileCache(str(cache)))(START_URL, session_name="corp-sso")
    assert loaded["accessToken"] == "sso-access-token"
    assert loaded["refreshToken"] == "sso-refresh"
    import botocore.session

    session = botocore.session.Session(profile="corp")
    provider = SSOTokenProvider(session, cache=JSONFileCache(str(cache)))
    token = provider.load_token().get_frozen_token()
    assert token.token == "sso-access-token"
    assert token.expiration is not None
    assert timedelta(hours=7) < token.expiration - now <= timedelta(hours=8, minutes=1)


def test_legacy_profile_login_uses_the_start_url_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stubber for IAM Identity Center; botocore's SSOTokenLoader reads the legacy file."""
    _aws_config(tmp_path, monkeypatch)
    config = sso_login.read_sso_config("legacy-sso")
    assert config.session_name is None and config.scopes == ()
    client, stub = _stubbed_oidc(config)
    _start(stub, config, datetime.now(timezone.utc))
    stub.add_response("create_token", {"accessToken": "legacy-token", "expiresIn": 3600})
    with stub:
        auth = sso_login.start_login("legacy-sso", client=client)
        path = sso_login.wait_for_token(auth, client=client, cache_dir=tmp_path / "c")
    assert path.name == hashlib.sha1(START_URL.encode()).hexdigest() + ".json"
    token = SSOTokenLoader(cache=JSONFileCache(str(tmp_path / "c")))(START_URL)
    assert token["accessToken"] == "legacy-token"
    assert "clientSecret" not in token
    assert os.name != "posix" or path.stat().st_mode & 0o077 == 0  # readable by the user only


def test_sso_login_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stubber for IAM Identity Center: denial, expiry and a profile without SSO."""
    _aws_config(tmp_path, monkeypatch)
    with pytest.raises(CredentialsError, match="not set up for SSO"):
        sso_login.read_sso_config("plain")
    with pytest.raises(CredentialsError, match="does not exist"):
        sso_login.read_sso_config("nope")
    config = sso_login.read_sso_config("corp")
    for code, message in (
        ("AccessDeniedException", "denied"),
        ("ExpiredTokenException", "expired"),
    ):
        client, stub = _stubbed_oidc(config)
        _start(stub, config, datetime.now(timezone.utc))
        stub.add_client_error("create_token", code)
        with stub, pytest.raises(CredentialsError, match=message):
            auth = sso_login.start_login("corp", client=client)
            sso_login.wait_for_token(auth, client=client, cache_dir=tmp_path / "c")
    # The code's own expiry, by the clock: no CreateToken call once it has passed.
    client, stub = _stubbed_oidc(config)
    start = datetime.now(timezone.utc)
    _start(stub, config, start)
    with stub:
        auth = sso_login.start_login("corp", client=client, now=lambda: start)
        with pytest.raises(CredentialsError, match="expired"):
            sso_login.wait_for_token(
                auth,
                client=client,
                cache_dir=tmp_path / "c",
                now=lambda: start + timedelta(seconds=601),
            )
    stub.assert_no_pending_responses()
    assert not (tmp_path / "c").exists()


def test_sso_login_cancels_promptly_from_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stubber for IAM Identity Center; the cancel is a real Event set from a real thread."""
    _aws_config(tmp_path, monkeypatch)
    config = sso_login.read_sso_config("corp")
    client, stub = _stubbed_oidc(config)
    _start(stub, config, datetime.now(timezone.utc), interval=30)
    stub.add_client_error("create_token", "AuthorizationPendingException")
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    with stub:
        auth = sso_login.start_login("corp", client=client)
        started = time.monotonic()
        timer.start()
        with pytest.raises(CancelledError):
            sso_login.wait_for_token(auth, cancel, client=client, cache_dir=tmp_path / "c")
    timer.join()
    assert time.monotonic() - started < 5


# --- secrets never leak ----------------------------------------------------------------------


def test_secrets_never_reach_our_files_or_logs(
    memory_keyring: MemoryKeyring,
    moto_checks_keys: tuple[str, str],
    isolated_user_dirs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _no_env_keys(monkeypatch)
    key_id, secret = moto_checks_keys
    caplog.set_level(logging.DEBUG)  # botocore's debug output included
    store_access_keys("studio", key_id, secret)
    creds = CloudCredentials(region=REGION, keychain_account="studio")
    settings_file = SettingsFile()
    assert settings_file.path.is_relative_to(isolated_user_dirs)
    settings_file.save(creds.apply_to(AppSettings()))
    loaded = CloudCredentials.from_app_settings(settings_file.load())
    assert loaded == creds
    arn = check_credentials(open_session(loaded))
    assert arn.endswith("user/vsr-editor")  # the stored keys really were used

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert settings_file.path in files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    out = capsys.readouterr()
    assert logged and "sts" in logged.lower()
    for text in (logged, out.out, out.err):
        assert secret not in text


def test_redact_masks_secrets_and_keeps_the_rest() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    token = "IQoJb3JpZ2luX2VjE" + "A1b2C3d4" * 20
    line = (
        f"keys AKIAIOSFODNN7EXAMPLE {secret} token={token} "
        f'{{"accessToken": "sso-access-token", "refreshToken": "r-1"}} '
        "aws_secret_access_key = shortsecret "
        "sha1 4e1243bd22c66e76c2ba9eddc1f91394e57f9f83 file /tmp/vsr/job.json"
    )
    out = redact(line)
    for leaked in (secret, token, "sso-access-token", "r-1", "shortsecret", "IOSFODNN7"):
        assert leaked not in out
    assert "AKIA…MPLE" in out
    assert "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83" in out
    assert "/tmp/vsr/job.json" in out
    assert redact("uploaded chunk_00003.mp4 in 2.5 s") == "uploaded chunk_00003.mp4 in 2.5 s"
