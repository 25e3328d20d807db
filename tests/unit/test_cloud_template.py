"""The CloudFormation template: valid for cfn-lint, and the settings that matter on AWS.

Static checks read the template the app deploys (stack_template.load_template); one test
deploys it into moto's CloudFormation to show the whole stack creates and exposes the
outputs of docs/cloud-contract.md. Instance sizes come from moto's copy of EC2's
instance-type catalogue, so "below the instance boundary" is measured, not assumed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.aws_fixture import MotoServer
from vsr_desktop.backends.aws import stack_template as st

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "cloud-contract.md"
SPOT_RECLAIM = "Host EC2*"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return st.load_template()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id]["Properties"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def lint(text: str) -> list[str]:
    from cfnlint.api import lint as cfn_lint

    return [f"{match.rule.id} {match.message}" for match in cfn_lint(text)]


def definition(template: dict[str, Any]) -> dict[str, Any]:
    return dict(props(template, st.STATE_MACHINE_RESOURCE)["Definition"])


def instance_types(template: dict[str, Any], parameter: str) -> list[dict[str, Any]]:
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    names = str(template["Parameters"][parameter]["Default"]).split(",")
    return [dict(INSTANCE_TYPES[name], name=name) for name in names]


def requirements(job_definition: dict[str, Any]) -> dict[str, int]:
    return {
        item["Type"]: int(item["Value"])
        for item in job_definition["ContainerProperties"]["ResourceRequirements"]
    }


# ---------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_finds_nothing() -> None:
    assert lint(st.template_body()) == []


def test_cfn_lint_would_catch_a_broken_definition_or_strategy(template: dict[str, Any]) -> None:
    """The lint is not vacuous: it reads the state machine and the Batch settings."""
    broken = copy.deepcopy(template)
    definition(broken)["States"]["Upscale"]["MaxConcurrency"] = "sixteen"
    assert any(line.startswith("E3601") for line in lint(json.dumps(broken)))
    broken = copy.deepcopy(template)
    compute = props(broken, "GpuComputeEnvironment")["ComputeResources"]
    compute["AllocationStrategy"] = "CHEAPEST"
    assert any(line.startswith("E") for line in lint(json.dumps(broken)))


# ------------------------------------------------------------------------------ bucket


def test_bucket_is_private_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    bucket = props(template, "Bucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    (policy,) = resources_of(template, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "Bucket"}
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert deny["Action"] in ("s3:*", ["s3:*"])
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    covered = json.dumps(deny["Resource"])
    assert '"Fn::GetAtt": ["Bucket", "Arn"]' in covered and "${Bucket.Arn}/*" in covered


def test_lifecycle_expires_job_objects_and_abandoned_uploads(template: dict[str, Any]) -> None:
    rules = props(template, "Bucket")["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    expiry = [rule for rule in rules if "ExpirationInDays" in rule]
    assert len(expiry) == 1
    assert expiry[0]["Prefix"] == "jobs/"
    assert expiry[0]["ExpirationInDays"] == {"Ref": st.PARAM_JOB_EXPIRATION_DAYS}
    aborts = [rule for rule in rules if "AbortIncompleteMultipartUpload" in rule]
    assert len(aborts) == 1 and aborts[0].get("Prefix", "") == ""
    assert 1 <= aborts[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 2


# --------------------------------------------------------------------------------- IAM


def allow_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every Allow statement of the roles' and policies' inline documents."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name, body in template["Resources"].items():
        documents = [
            policy["PolicyDocument"] for policy in body.get("Properties", {}).get("Policies", [])
        ]
        if body["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(body["Properties"]["PolicyDocument"])
        for document in documents:
            found += [
                (name, statement)
                for statement in document["Statement"]
                if statement["Effect"] == "Allow"
            ]
    return found


def test_no_statement_grants_every_action_of_anything(template: dict[str, Any]) -> None:
    statements = allow_statements(template)
    assert len(statements) >= 5
    for name, statement in statements:
        assert "NotAction" not in statement, name
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), (name, action)


def test_state_machine_role_can_run_watch_and_stop_batch_jobs(template: dict[str, Any]) -> None:
    machine = props(template, st.STATE_MACHINE_RESOURCE)
    assert machine["RoleArn"] == {"Fn::GetAtt": ["StateMachineRole", "Arn"]}
    statements = [
        statement for name, statement in allow_statements(template) if name == "StateMachineRole"
    ]
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    assert actions == {
        "batch:SubmitJob",
        "batch:DescribeJobs",
        "batch:TerminateJob",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    }
    (events,) = [
        statement for statement in statements if "events:PutRule" in as_list(statement["Action"])
    ]
    assert events["Resource"] == {
        "Fn::Sub": (
            "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}"
            ":rule/StepFunctionsGetEventsForBatchJobsRule"
        )
    }
    (submit,) = [
        statement for statement in statements if "batch:SubmitJob" in as_list(statement["Action"])
    ]
    assert {"Ref": "GpuJobQueue"} in submit["Resource"]
    assert {"Ref": "CpuJobQueue"} in submit["Resource"]


def test_job_role_reaches_only_this_buckets_job_objects(template: dict[str, Any]) -> None:
    statements = [statement for name, statement in allow_statements(template) if name == "JobRole"]
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= actions
    assert all(action.startswith("s3:") for action in actions)
    for statement in statements:
        for resource in as_list(statement["Resource"]):
            text = json.dumps(resource)
            assert resource == {"Fn::GetAtt": ["Bucket", "Arn"]} or (
                "${Bucket.Arn}/jobs/" in text
            ), text


# ------------------------------------------------------------------------------- Batch


def test_gpu_compute_is_spot_price_capacity_optimised_over_several_families(
    template: dict[str, Any],
) -> None:
    environment = props(template, "GpuComputeEnvironment")
    assert environment["Type"] == "MANAGED"
    assert "ServiceRole" in environment  # moto's CloudFormation needs it
    compute = environment["ComputeResources"]
    assert compute["Type"] == "SPOT"
    assert compute["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert compute["MinvCpus"] == 0
    assert compute["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    assert compute["InstanceTypes"] == {"Ref": st.PARAM_GPU_INSTANCE_TYPES}
    assert compute["MaxvCpus"] == {"Ref": st.PARAM_MAX_GPU_VCPUS}
    types = instance_types(template, st.PARAM_GPU_INSTANCE_TYPES)
    assert len({item["name"].split(".")[0] for item in types}) >= 3
    assert all(item["GpuInfo"]["Gpus"][0]["Count"] >= 1 for item in types)


def image_types(template: dict[str, Any]) -> dict[str, list[str]]:
    """Every compute environment's ECS image types (what AMI Batch launches)."""
    return {
        name: [
            item["ImageType"]
            for item in body["Properties"]["ComputeResources"].get("Ec2Configuration", [])
        ]
        for name, body in resources_of(template, "AWS::Batch::ComputeEnvironment").items()
    }


def test_no_compute_environment_asks_for_an_image_type_aws_retired(
    template: dict[str, Any],
) -> None:
    """AL1 is end of life and AWS ends support for the AL2 ECS AMIs (Batch Ec2Configuration
    reference); every environment names an AL2023 image explicitly (no default to rely on)."""
    found = image_types(template)
    assert set(found) == {
        "GpuComputeEnvironment",
        "CpuComputeEnvironment",
        "GpuOnDemandComputeEnvironment",
    }
    assert {"ECS_AL1", "ECS_AL2", "ECS_AL2_NVIDIA"} == st.RETIRED_IMAGE_TYPES
    for name, types in found.items():
        assert types, f"{name} names no image type: Batch would pick its default"
        assert not set(types) & st.RETIRED_IMAGE_TYPES, (name, types)
    assert found["GpuComputeEnvironment"] == ["ECS_AL2023_NVIDIA"]
    assert found["GpuOnDemandComputeEnvironment"] == ["ECS_AL2023_NVIDIA"]
    assert found["CpuComputeEnvironment"] == ["ECS_AL2023"]
    # The check is not vacuous: the old value is caught.
    old = copy.deepcopy(template)
    props(old, "CpuComputeEnvironment")["ComputeResources"]["Ec2Configuration"] = [
        {"ImageType": "ECS_AL2"}
    ]
    assert set(image_types(old)["CpuComputeEnvironment"]) & st.RETIRED_IMAGE_TYPES


def test_on_demand_gpu_environment_is_opt_in_and_second_in_the_queue(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"][st.PARAM_ON_DEMAND_GPU_FALLBACK]
    assert parameter["Default"] == "false" and set(parameter["AllowedValues"]) == {"true", "false"}
    assert template["Conditions"]["UseOnDemandGpu"] == {
        "Fn::Equals": [{"Ref": st.PARAM_ON_DEMAND_GPU_FALLBACK}, "true"]
    }
    body = template["Resources"]["GpuOnDemandComputeEnvironment"]
    assert body["Condition"] == "UseOnDemandGpu"
    compute = body["Properties"]["ComputeResources"]
    assert compute["Type"] == "EC2" and compute["MinvCpus"] == 0
    assert compute["InstanceTypes"] == {"Ref": st.PARAM_GPU_INSTANCE_TYPES}
    spot = {"Order": 1, "ComputeEnvironment": {"Ref": "GpuComputeEnvironment"}}
    on_demand = {"Order": 2, "ComputeEnvironment": {"Ref": "GpuOnDemandComputeEnvironment"}}
    order = props(template, "GpuJobQueue")["ComputeEnvironmentOrder"]
    assert order == {"Fn::If": ["UseOnDemandGpu", [spot, on_demand], [spot]]}


@pytest.mark.parametrize("queue", sorted(st.JOB_QUEUE_RESOURCES.values()))
def test_queues_cancel_a_job_that_waits_too_long_for_capacity(
    template: dict[str, Any], queue: str
) -> None:
    """jobStateTimeLimitActions act only on these blocked-job reasons (Batch user guide,
    "Jobs stuck in RUNNABLE"); the app words each one (capacity_wait_message)."""
    actions = props(template, queue)["JobStateTimeLimitActions"]
    assert {a["Reason"] for a in actions} == set(st.CAPACITY_WAIT_REASONS)
    for action in actions:
        assert action["Action"] == "CANCEL" and action["State"] == "RUNNABLE"
        assert action["MaxTimeSeconds"] == {"Ref": st.PARAM_MAX_CAPACITY_WAIT_SECONDS}
    parameter = template["Parameters"][st.PARAM_MAX_CAPACITY_WAIT_SECONDS]
    assert 600 <= parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] <= 86400


def test_a_capacity_cancel_reads_as_a_clear_message() -> None:
    reason = (
        "Canceled by JobStateTimeLimit action due to reason: "
        "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    )
    message = st.capacity_wait_message(reason, "3600")
    assert message is not None
    assert message.startswith("cancelled after waiting 60 min for capacity")
    assert "Spot quota" in message and "On-Demand" in message
    assert st.capacity_wait_message("Essential container in task exited", "3600") is None


def test_cpu_compute_for_split_and_merge_scales_to_zero(template: dict[str, Any]) -> None:
    compute = props(template, "CpuComputeEnvironment")["ComputeResources"]
    assert compute["Type"] in {"SPOT", "EC2"}
    assert compute["MinvCpus"] == 0
    types = instance_types(template, st.PARAM_CPU_INSTANCE_TYPES)
    assert types and all("GpuInfo" not in item for item in types)
    queues = {
        logical_id: props(template, logical_id)["ComputeEnvironmentOrder"]
        for logical_id in st.JOB_QUEUE_RESOURCES.values()
    }
    gpu_orders = queues["GpuJobQueue"]["Fn::If"][1:]  # with and without On-Demand
    assert all(o[0]["ComputeEnvironment"] == {"Ref": "GpuComputeEnvironment"} for o in gpu_orders)
    assert queues["CpuJobQueue"][0]["ComputeEnvironment"] == {"Ref": "CpuComputeEnvironment"}


@pytest.mark.parametrize(
    ("stage", "parameter"),
    [
        ("upscale", st.PARAM_GPU_INSTANCE_TYPES),
        ("split", st.PARAM_CPU_INSTANCE_TYPES),
        ("merge", st.PARAM_CPU_INSTANCE_TYPES),
    ],
)
def test_jobs_fit_below_the_smallest_instance(
    template: dict[str, Any], stage: str, parameter: str
) -> None:
    """A job asking for the instance's whole memory stays RUNNABLE forever (ECS keeps some)."""
    job = props(template, st.JOB_DEFINITION_RESOURCES[stage])
    needs = requirements(job)
    types = instance_types(template, parameter)
    smallest_mib = min(item["MemoryInfo"]["SizeInMiB"] for item in types)
    assert needs["MEMORY"] <= 0.9 * smallest_mib, (needs, smallest_mib)
    assert needs["VCPU"] <= min(item["VCpuInfo"]["DefaultVCpus"] for item in types)
    assert needs.get("GPU", 0) == (1 if stage == "upscale" else 0)
    assert job["Timeout"]["AttemptDurationSeconds"] > 0


@pytest.mark.parametrize("stage", sorted(st.JOB_DEFINITION_RESOURCES))
def test_jobs_retry_only_when_spot_reclaims_the_host(template: dict[str, Any], stage: str) -> None:
    strategy = props(template, st.JOB_DEFINITION_RESOURCES[stage])["RetryStrategy"]
    assert strategy["Attempts"] >= 2
    rules = strategy["EvaluateOnExit"]
    retries = [rule for rule in rules if rule["Action"] == "RETRY"]
    assert retries == [{"OnStatusReason": SPOT_RECLAIM, "Action": "RETRY"}]
    assert rules[0] == retries[0]  # evaluated first
    assert rules[-1] == {"OnReason": "*", "Action": "EXIT"}


@pytest.mark.parametrize("stage", sorted(st.JOB_DEFINITION_RESOURCES))
def test_jobs_run_the_worker_image_and_log_to_the_stacks_group(
    template: dict[str, Any], stage: str
) -> None:
    container = props(template, st.JOB_DEFINITION_RESOURCES[stage])["ContainerProperties"]
    assert container["Image"] == {"Ref": st.PARAM_CONTAINER_IMAGE}
    assert container["Command"] == ["vsr", "worker", stage]
    assert container["JobRoleArn"] == {"Fn::GetAtt": ["JobRole", "Arn"]}
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert props(template, "LogGroup")["RetentionInDays"] == {"Ref": st.PARAM_LOG_RETENTION_DAYS}


# ----------------------------------------------------------------------- state machine


def test_map_concurrency_comes_from_the_parameter_and_never_exceeds_40(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"][st.PARAM_MAX_PARALLEL_CHUNKS]
    assert parameter["Default"] == 16
    assert 1 <= parameter["MinValue"] <= parameter["MaxValue"] <= st.MAX_INLINE_MAP_CONCURRENCY
    machine = props(template, st.STATE_MACHINE_RESOURCE)
    assert machine["DefinitionSubstitutions"][st.SUB_MAX_PARALLEL_CHUNKS] == {
        "Ref": st.PARAM_MAX_PARALLEL_CHUNKS
    }
    asl = json.loads(
        st.state_machine_definition(
            dict.fromkeys(machine["DefinitionSubstitutions"], "arn:test"), max_concurrency=40
        )
    )
    upscale = asl["States"]["Upscale"]
    assert upscale["Type"] == "Map"
    assert upscale["ItemsPath"] == "$.chunks"
    assert upscale["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"
    assert "MaxConcurrency" not in upscale
    assert upscale["MaxConcurrencyPath"] == "$.config.max_parallel_chunks"
    configure = asl["States"][asl["StartAt"]]
    assert configure["ResultPath"] == "$.config"
    assert configure["Parameters"] == {"max_parallel_chunks.$": "States.StringToJson('40')"}


def test_time_limits_execution_and_each_chunk_job(template: dict[str, Any]) -> None:
    """The execution ends TIMED_OUT after a fixed limit; each chunk job gets the input's
    chunk_timeout_seconds (from the throughput table) as its SubmitJob timeout, or the
    default when the input has none."""
    asl = definition(template)
    assert asl["TimeoutSeconds"] == st.EXECUTION_TIMEOUT_SECONDS
    assert asl["States"]["Configure"]["Next"] == "ChunkTimeout"
    defaults = asl["States"]["ChunkTimeout"]
    merge = defaults["Parameters"]["input.$"]
    assert merge == (
        "States.JsonMerge(States.StringToJson("
        f"'{{\"chunk_timeout_seconds\":{st.DEFAULT_CHUNK_TIMEOUT_SECONDS}}}'), $, false)"
    )
    assert defaults["OutputPath"] == "$.input" and defaults["Next"] == "Split"
    upscale = asl["States"]["Upscale"]
    assert upscale["ItemSelector"]["chunk_timeout_seconds.$"] == "$.chunk_timeout_seconds"
    chunk = upscale["ItemProcessor"]["States"]["UpscaleChunk"]["Parameters"]
    assert chunk["Timeout"] == {"AttemptDurationSeconds.$": "$.chunk_timeout_seconds"}


def test_notices_are_optional_and_scoped_to_this_stack(template: dict[str, Any]) -> None:
    """SNS email when an execution ends; an AWS Budgets alarm: both off unless asked."""
    assert template["Parameters"][st.PARAM_NOTIFICATION_EMAIL]["Default"] == ""
    assert template["Parameters"][st.PARAM_MONTHLY_BUDGET_USD]["Default"] == 0
    conditions = {
        name: body.get("Condition")
        for name, body in template["Resources"].items()
        if name in {"NotificationTopic", "NotificationTopicPolicy", "JobEndedRule", "MonthlyBudget"}
    }
    assert conditions == {
        "NotificationTopic": "Notify",
        "NotificationTopicPolicy": "Notify",
        "JobEndedRule": "Notify",
        "MonthlyBudget": "HasBudget",
    }
    rule = props(template, "JobEndedRule")
    assert rule["EventPattern"]["source"] == ["aws.states"]
    assert rule["EventPattern"]["detail"]["stateMachineArn"] == [{"Ref": "StateMachine"}]
    assert set(rule["EventPattern"]["detail"]["status"]) == {
        "SUCCEEDED",
        "FAILED",
        "TIMED_OUT",
        "ABORTED",
    }
    assert rule["Targets"][0]["Arn"] == {"Ref": "NotificationTopic"}
    budget = props(template, "MonthlyBudget")
    assert budget["Budget"]["BudgetLimit"]["Amount"] == {"Ref": st.PARAM_MONTHLY_BUDGET_USD}
    for notice in budget["NotificationsWithSubscribers"]:
        assert notice["Subscribers"] == [
            {"SubscriptionType": "EMAIL", "Address": {"Ref": st.PARAM_NOTIFICATION_EMAIL}}
        ]


def batch_tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    states = dict(asl["States"])
    states.update(asl["States"]["Upscale"]["ItemProcessor"]["States"])
    return {name: state for name, state in states.items() if state["Type"] == "Task"}


def test_every_batch_task_retries_throttling_with_jittered_backoff(
    template: dict[str, Any],
) -> None:
    tasks = batch_tasks(definition(template))
    assert set(tasks) == {"Split", "UpscaleChunk", "Merge"}
    for name, task in tasks.items():
        assert task["Resource"] == "arn:aws:states:::batch:submitJob.sync", name
        (retry,) = task["Retry"]
        assert {
            "Batch.ServerException",
            "Batch.TooManyRequestsException",
            "Batch.BatchException",
        } <= set(retry["ErrorEquals"]), name
        assert "States.ALL" not in retry["ErrorEquals"]
        assert retry["BackoffRate"] > 1 and retry["MaxDelaySeconds"] > 0
        assert retry["JitterStrategy"] == "FULL"


def test_failures_are_caught_into_fail_states_that_keep_the_cause(template: dict[str, Any]) -> None:
    asl = definition(template)
    for name in ("Split", "Upscale", "Merge"):
        (catch,) = asl["States"][name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert catch["ResultPath"] == "$.error"  # the input survives next to the error
        failed = asl["States"][catch["Next"]]
        assert failed["Type"] == "Fail"
        assert failed["Error"] == f"{name}Failed"
        assert failed["CausePath"] == "$.error.Cause"


def test_tasks_keep_the_input_and_use_contract_names_and_environment(
    template: dict[str, Any],
) -> None:
    asl = definition(template)
    tasks = batch_tasks(asl)
    assert tasks["Split"]["ResultPath"] == "$.split"
    assert tasks["Merge"]["ResultPath"] == "$.merge"
    assert asl["States"]["Upscale"]["ResultPath"] is None
    names = {name: task["Parameters"]["JobName.$"] for name, task in tasks.items()}
    assert names == {
        "Split": "States.Format('vsr-{}-split', $.job_id)",
        "UpscaleChunk": "States.Format('vsr-{}-chunk-{}', $.job_id, $.chunk)",
        "Merge": "States.Format('vsr-{}-merge', $.job_id)",
    }
    queues = {name: task["Parameters"]["JobQueue"] for name, task in tasks.items()}
    assert queues == {
        "Split": "${CpuJobQueueArn}",
        "UpscaleChunk": "${GpuJobQueueArn}",
        "Merge": "${CpuJobQueueArn}",
    }
    chunk_env = tasks["UpscaleChunk"]["Parameters"]["ContainerOverrides"]["Environment"]
    assert {item["Name"]: item["Value.$"] for item in chunk_env} == {
        "VSR_JOB_URI": "$.job_uri",
        "VSR_CHUNK_INDEX": "$.chunk",
    }


# ----------------------------------------------------------------------------- outputs


def test_outputs_are_exactly_the_contracts(template: dict[str, Any]) -> None:
    section = CONTRACT.read_text(encoding="utf-8").split("## Stack outputs", 1)[1]
    section = section.split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Za-z]+)`", section))
    assert set(template["Outputs"]) == documented == set(st.OUTPUT_KEYS)


def test_parameter_constants_name_real_parameters(template: dict[str, Any]) -> None:
    names = {value for key, value in vars(st).items() if key.startswith("PARAM_")}
    assert names == set(template["Parameters"])
    defaults = st.parameter_defaults()
    assert defaults[st.PARAM_MAX_PARALLEL_CHUNKS] == "16"
    assert defaults[st.PARAM_GPU_INSTANCE_TYPES].startswith("g4dn.xlarge,")


def test_template_ships_inside_the_package() -> None:
    import vsr_desktop

    package = Path(vsr_desktop.__file__).resolve().parent
    assert st.template_path().is_relative_to(package)
    assert st.template_path().relative_to(package).as_posix() == "resources/cloud/stack.yaml"


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.*BucketPolicy:UserWarning")
def test_stack_creates_in_moto_cloudformation_with_contract_outputs(aws: MotoServer) -> None:
    """The whole template deploys (moto skips what it cannot model, e.g. the bucket policy).

    moto's CloudFormation does not split a CommaDelimitedList *default*, so the instance
    lists are passed explicitly, as the app's deploy code may do anyway.
    """
    import boto3

    defaults = st.parameter_defaults()
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName="vsr-moto",
        TemplateBody=st.template_body(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[
            {"ParameterKey": key, "ParameterValue": defaults[key]}
            for key in (st.PARAM_GPU_INSTANCE_TYPES, st.PARAM_CPU_INSTANCE_TYPES)
        ],
    )
    stack = cloudformation.describe_stacks(StackName="vsr-moto")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack["Outputs"]}
    assert set(outputs) == set(st.OUTPUT_KEYS)
    names = st.resource_names("vsr-moto")
    assert outputs[st.OUTPUT_GPU_JOB_QUEUE_ARN].endswith(f":job-queue/{names['gpu']}")
    assert outputs[st.OUTPUT_CPU_JOB_QUEUE_ARN].endswith(f":job-queue/{names['cpu']}")
    assert outputs[st.OUTPUT_LOG_GROUP_NAME] == "/vsr-desktop/vsr-moto"
    assert outputs[st.OUTPUT_MAX_PARALLEL_CHUNKS] == "16"

    batch = boto3.client("batch")
    environments = batch.describe_compute_environments()["computeEnvironments"]
    assert (
        sorted(env["computeResources"]["allocationStrategy"] for env in environments)
        == ["SPOT_PRICE_CAPACITY_OPTIMIZED"] * 2
    )
    definitions = {
        item["jobDefinitionName"]: item
        for item in batch.describe_job_definitions()["jobDefinitions"]
    }
    assert set(definitions) == {names["split"], names["upscale"], names["merge"]}
    upscale = definitions[names["upscale"]]
    assert {"type": "GPU", "value": "1"} in upscale["containerProperties"]["resourceRequirements"]
    assert upscale["retryStrategy"]["evaluateOnExit"][0]["onStatusReason"] == SPOT_RECLAIM
    assert boto3.client("s3").head_bucket(Bucket=outputs[st.OUTPUT_BUCKET_NAME])
