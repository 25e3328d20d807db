"""The CloudFormation template of the AWS offload, and the state machine it deploys.

One template (resources/cloud/stack.yaml) is the single source: the deploy code sends its
text, and tests (or anything else that needs the ASL) get the exact state machine definition
from it with the DefinitionSubstitutions applied the way CloudFormation applies them.
No boto3 here; PyYAML is imported only when the template has to be parsed.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from vsr_desktop.resources import RESOURCES

TEMPLATE_FILE = RESOURCES / "cloud" / "stack.yaml"

# Stack outputs (docs/cloud-contract.md).
OUTPUT_BUCKET_NAME = "BucketName"
OUTPUT_STATE_MACHINE_ARN = "StateMachineArn"
OUTPUT_GPU_JOB_QUEUE_ARN = "GpuJobQueueArn"
OUTPUT_CPU_JOB_QUEUE_ARN = "CpuJobQueueArn"
OUTPUT_LOG_GROUP_NAME = "LogGroupName"
OUTPUT_MAX_PARALLEL_CHUNKS = "MaxParallelChunks"
OUTPUT_PREVIEW_ROLE_ARN = "PreviewRoleArn"  # the cloud preview endpoint's execution role
OUTPUT_KEYS = (
    OUTPUT_BUCKET_NAME,
    OUTPUT_STATE_MACHINE_ARN,
    OUTPUT_GPU_JOB_QUEUE_ARN,
    OUTPUT_CPU_JOB_QUEUE_ARN,
    OUTPUT_LOG_GROUP_NAME,
    OUTPUT_MAX_PARALLEL_CHUNKS,
    OUTPUT_PREVIEW_ROLE_ARN,
)

# Stack parameters.
PARAM_CONTAINER_IMAGE = "ContainerImage"
PARAM_GPU_INSTANCE_TYPES = "GpuInstanceTypes"
PARAM_MAX_GPU_VCPUS = "MaxGpuVcpus"
PARAM_CPU_INSTANCE_TYPES = "CpuInstanceTypes"
PARAM_MAX_CPU_VCPUS = "MaxCpuVcpus"
PARAM_VOLUME_SIZE_GIB = "VolumeSizeGiB"
PARAM_LOG_RETENTION_DAYS = "LogRetentionDays"
PARAM_JOB_EXPIRATION_DAYS = "JobExpirationDays"
PARAM_MAX_PARALLEL_CHUNKS = "MaxParallelChunks"
PARAM_VPC_CIDR = "VpcCidr"
PARAM_SUBNET_A_CIDR = "SubnetACidr"
PARAM_SUBNET_B_CIDR = "SubnetBCidr"
PARAM_MAX_CAPACITY_WAIT_SECONDS = "MaxCapacityWaitSeconds"
PARAM_ON_DEMAND_GPU_FALLBACK = "OnDemandGpuFallback"
PARAM_NOTIFICATION_EMAIL = "NotificationEmail"
PARAM_MONTHLY_BUDGET_USD = "MonthlyBudgetUsd"

# ECS image types AWS Batch no longer supports (Ec2Configuration reference: Amazon Linux
# reached end of life; AWS ends support for the AL2 ECS-optimised and AL2 GPU AMIs, and
# Batch's default for new environments became ECS_AL2023 in January 2026).
RETIRED_IMAGE_TYPES = frozenset({"ECS_AL1", "ECS_AL2", "ECS_AL2_NVIDIA"})

# Limits the state machine definition holds (the template's literal values; tests compare).
EXECUTION_TIMEOUT_SECONDS = 72 * 3600  # TimeoutSeconds: no execution runs longer
DEFAULT_CHUNK_TIMEOUT_SECONDS = 7200  # a chunk job's limit when the input names none

# Batch cancels a job blocked at the head of a queue for MaxCapacityWaitSeconds with
# statusReason "Canceled by JobStateTimeLimit action due to reason: <reason>"; these are
# the reasons the queues act on, and what the app tells the user instead.
CAPACITY_WAIT_REASONS = {
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": (
        "AWS had no instance of the chosen types to give (Spot capacity or the account's "
        "Spot quota 'All G and VT Spot Instance Requests'); add instance types, ask for a "
        "quota increase, or turn on the On-Demand fallback"
    ),
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE": (
        "the compute environment's vCPU limit is below what one job needs; raise "
        "MaxGpuVcpus (`vsr cloud setup --max-gpu-vcpus`)"
    ),
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT": (
        "none of the chosen instance types can run the job (GPU, memory); choose GPU "
        "instance types with at least 16 GiB"
    ),
}


def capacity_wait_message(status_reason: str, wait_seconds: str | int | None = None) -> str | None:
    """The user's words for a job the queue cancelled after waiting for capacity (None when
    `status_reason` is something else)."""
    for code, advice in CAPACITY_WAIT_REASONS.items():
        if code in status_reason and "JobStateTimeLimit" in status_reason:
            waited = f" {int(wait_seconds) // 60} min" if wait_seconds else ""
            return f"cancelled after waiting{waited} for capacity: {advice}"
    return None


# DefinitionSubstitutions keys the state machine definition uses.
SUB_CPU_JOB_QUEUE_ARN = "CpuJobQueueArn"
SUB_GPU_JOB_QUEUE_ARN = "GpuJobQueueArn"
SUB_SPLIT_JOB_DEFINITION_ARN = "SplitJobDefinitionArn"
SUB_UPSCALE_JOB_DEFINITION_ARN = "UpscaleJobDefinitionArn"
SUB_MERGE_JOB_DEFINITION_ARN = "MergeJobDefinitionArn"
SUB_MAX_PARALLEL_CHUNKS = "MaxParallelChunks"

# The execution's error when a stage fails (its cause is the failed job or Batch's refusal).
ERROR_SPLIT_FAILED = "SplitFailed"
ERROR_UPSCALE_FAILED = "UpscaleFailed"
ERROR_MERGE_FAILED = "MergeFailed"

# Step Functions runs at most this many iterations of an inline Map at once.
MAX_INLINE_MAP_CONCURRENCY = 40

STATE_MACHINE_RESOURCE = "StateMachine"
# Logical ids of the named Batch resources, by the role they play in a job.
JOB_QUEUE_RESOURCES = {"gpu": "GpuJobQueue", "cpu": "CpuJobQueue"}
JOB_DEFINITION_RESOURCES = {
    "split": "SplitJobDefinition",
    "upscale": "UpscaleJobDefinition",
    "merge": "MergeJobDefinition",
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def template_path() -> Path:
    return TEMPLATE_FILE


def template_body() -> str:
    """The template text, as create_stack / update_stack take it."""
    return TEMPLATE_FILE.read_text(encoding="utf-8")


def load_template() -> dict[str, Any]:
    """The parsed template; short tags (!Ref, !Sub, !GetAtt …) become their long forms."""
    return _parse(template_body())


def template_parameters(text: str) -> dict[str, dict[str, Any]]:
    """The Parameters section of a template text (YAML or JSON), {} when it has none."""
    params = _parse(text).get("Parameters") or {}
    return {str(k): dict(v) for k, v in params.items()}


def parameter_defaults() -> dict[str, str]:
    """Every parameter's default as CloudFormation sees it (a string; lists comma-joined)."""
    params: dict[str, dict[str, Any]] = load_template()["Parameters"]
    return {name: str(spec["Default"]) for name, spec in params.items() if "Default" in spec}


def resource_names(stack_name: str) -> dict[str, str]:
    """The names the stack gives its job queues and job definitions (keys as in the
    *_RESOURCES maps: gpu, cpu, split, upscale, merge), so code outside CloudFormation
    can find or recreate them."""
    resources = load_template()["Resources"]
    names: dict[str, str] = {}
    for role, logical_id in JOB_QUEUE_RESOURCES.items():
        names[role] = _sub_stack_name(
            resources[logical_id]["Properties"]["JobQueueName"], stack_name
        )
    for role, logical_id in JOB_DEFINITION_RESOURCES.items():
        names[role] = _sub_stack_name(
            resources[logical_id]["Properties"]["JobDefinitionName"], stack_name
        )
    return names


def state_machine_definition(
    substitutions: dict[str, str], max_concurrency: int | None = None
) -> str:
    """The ASL JSON the stack deploys, with the substitutions applied as CloudFormation does.

    `max_concurrency` overrides the MaxParallelChunks substitution; without either, the
    template's default applies. A placeholder left without a value is an error, as it is
    for CloudFormation.
    """
    values = dict(substitutions)
    if max_concurrency is not None:
        values[SUB_MAX_PARALLEL_CHUNKS] = str(max_concurrency)
    values.setdefault(SUB_MAX_PARALLEL_CHUNKS, parameter_defaults()[PARAM_MAX_PARALLEL_CHUNKS])
    _check_concurrency(values[SUB_MAX_PARALLEL_CHUNKS])

    definition = load_template()["Resources"][STATE_MACHINE_RESOURCE]["Properties"]["Definition"]
    text = json.dumps(definition)
    missing = sorted({key for key in _PLACEHOLDER.findall(text) if key not in values})
    if missing:
        raise ValueError(f"state machine substitutions missing: {', '.join(missing)}")
    # Escaped for JSON, so any value keeps the document valid.
    return _PLACEHOLDER.sub(lambda match: json.dumps(values[match.group(1)])[1:-1], text)


def _check_concurrency(value: str) -> None:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"MaxParallelChunks must be a whole number, not {value!r}") from None
    if not 1 <= number <= MAX_INLINE_MAP_CONCURRENCY:
        raise ValueError(f"MaxParallelChunks must be 1…{MAX_INLINE_MAP_CONCURRENCY}, not {number}")


def _sub_stack_name(value: Any, stack_name: str) -> str:
    """Resolve a `!Sub "${AWS::StackName}-x"` name (the only form the template uses)."""
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return str(value["Fn::Sub"]).replace("${AWS::StackName}", stack_name)
    if isinstance(value, str):
        return value
    raise ValueError(f"unexpected name in the template: {value!r}")


@lru_cache(maxsize=4)
def _parse_cached(text: str) -> str:
    import yaml

    class CfnLoader(yaml.SafeLoader):
        """SafeLoader that reads CloudFormation's short-form intrinsic functions."""

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        if suffix == "Condition":
            return {"Condition": value}
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", construct)
    # Cached as JSON text so every caller gets its own fresh, mutable copy.
    return json.dumps(yaml.load(text, Loader=CfnLoader))  # a SafeLoader subclass


def _parse(text: str) -> dict[str, Any]:
    document = json.loads(_parse_cached(text))
    if not isinstance(document, dict):
        raise ValueError("the CloudFormation template is not a mapping")
    return document
