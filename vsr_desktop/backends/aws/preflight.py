"""Checks before a job is sent: will AWS ever run it? Each refusal says what to do.

A job sent to an account whose GPU Spot quota is 0 waits for capacity until the queue's
time limit cancels it; a job whose worker image is not in ECR fails every Batch job with
CannotPullContainerError after instances have booted (and billed). Both are cheap to ask
about first: Service Quotas for "All G and VT Spot Instance Requests" (L-3819A6DF) and ECR
DescribeImages for the stack's ContainerImage.

A check AWS will not answer (no permission for Service Quotas, an image outside ECR) is
skipped, not refused: the checks exist to catch the common mistakes early, and the queue's
time limit still stops a job that can never start.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws import stack_template as tpl
from vsr_desktop.backends.aws.cost import vcpus_in
from vsr_desktop.backends.aws.errors import CloudError
from vsr_desktop.backends.aws.stack import StackInfo

SPOT_QUOTA_CODE = "L-3819A6DF"  # EC2: All G and VT Spot Instance Requests (vCPUs)
SPOT_QUOTA_NAME = "All G and VT Spot Instance Requests"
#: The template's ContainerImage default: a placeholder nobody has pushed.
PLACEHOLDER_IMAGE_PREFIX = "public.ecr.aws/vsr-desktop/"
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]+))?$"
)
_PUSH_DOC = "packaging/docker/README.md, 'Build and push to ECR'"


def check_account(session: Any, stack: StackInfo) -> None:
    """Every pre-submit check; the first that fails raises CloudError with its remedy."""
    check_spot_quota(session, stack)
    check_worker_image(session, stack)


def spot_quota(session: Any) -> float | None:
    """The account's applied GPU Spot vCPU quota in this region (else AWS's default for
    it); None when Service Quotas will not say (no permission, unknown)."""
    from botocore.config import Config

    # One try: the check is advisory, and a slow or failing Service Quotas must not hold
    # up a submit.
    client = session.client("service-quotas", config=Config(retries={"max_attempts": 1}))
    for call in ("get_service_quota", "get_aws_default_service_quota"):
        try:
            reply = getattr(client, call)(ServiceCode="ec2", QuotaCode=SPOT_QUOTA_CODE)
            return float(reply["Quota"]["Value"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchResourceException":
                return None  # AccessDenied and the like: cannot check
        except (BotoCoreError, KeyError, TypeError, ValueError):
            return None
    return None


def check_spot_quota(session: Any, stack: StackInfo) -> None:
    """Refuse when the Spot quota cannot hold one GPU instance of the stack's smallest type,
    unless the stack has the On-Demand GPU environment (then jobs can run there)."""
    types = stack.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) or tpl.parameter_defaults()[
        tpl.PARAM_GPU_INSTANCE_TYPES
    ].split(",")
    needed = min(vcpus_in(t) for t in types)
    quota = spot_quota(session)
    if quota is None or quota >= needed:
        return
    if stack.parameters.get(tpl.PARAM_ON_DEMAND_GPU_FALLBACK, "").lower() == "true":
        return  # the On-Demand environment takes the jobs (at its own quota and price)
    region = session.region_name
    smallest = min(types, key=vcpus_in)
    raise CloudError(
        f"your AWS account's GPU Spot quota in {region} is {quota:g} vCPUs "
        f'("{SPOT_QUOTA_NAME}", {SPOT_QUOTA_CODE}); one {smallest} needs {needed}, so the '
        "job would wait for capacity until it is cancelled",
        f"ask AWS for at least {needed} vCPUs (4 per parallel chunk) in the console: Service "
        f'Quotas → Amazon EC2 → "{SPOT_QUOTA_NAME}" (approval can take a day); or turn on '
        "the On-Demand GPU environment, about 3× the price: `vsr cloud setup "
        "--on-demand-fallback true`",
    )


def check_worker_image(session: Any, stack: StackInfo) -> None:
    """Refuse when the stack's worker image is the placeholder, or an ECR image of this
    account that ECR does not hold (nothing has been pushed under that tag)."""
    image = stack.parameters.get(tpl.PARAM_CONTAINER_IMAGE, "").strip()
    if not image:
        return  # a stack that does not say (an older one): nothing to check
    if image.startswith(PLACEHOLDER_IMAGE_PREFIX):
        raise CloudError(
            f"the stack {stack.name} still names the placeholder worker image {image}",
            f"build and push the worker image ({_PUSH_DOC}), then "
            "`vsr cloud setup --image ACCOUNT.dkr.ecr.REGION.amazonaws.com/vsr-worker:TAG`",
        )
    match = _ECR_IMAGE.match(image)
    if match is None:
        return  # another registry: Batch will say if it cannot pull
    repo, tag, digest = match["repo"], match["tag"], match["digest"]
    image_id = {"imageDigest": digest} if digest else {"imageTag": tag or "latest"}
    ecr = session.client("ecr", region_name=match["region"])
    try:
        ecr.describe_images(registryId=match["account"], repositoryName=repo, imageIds=[image_id])
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in {"ImageNotFoundException", "RepositoryNotFoundException"}:
            return  # no permission to look: Batch will say if it cannot pull
    except BotoCoreError:
        return
    host = image.split("/", 1)[0]
    what = "repository" if code == "RepositoryNotFoundException" else "image"
    raise CloudError(
        f"the worker image {image} is not in ECR (no such {what}): every Batch job would "
        "fail to pull it",
        f"push it ({_PUSH_DOC}): `aws ecr get-login-password --region {match['region']} | "
        f"docker login --username AWS --password-stdin {host} && docker push {image}`"
        + (
            f" (create the repository first: `aws ecr create-repository --repository-name "
            f"{repo} --region {match['region']}`)"
            if what == "repository"
            else ""
        ),
    )
