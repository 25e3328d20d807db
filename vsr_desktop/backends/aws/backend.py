"""The AWS backend: submit, poll, cancel and download jobs that run in the user's account.

submit: probe and plan here (the estimate needs them anyway), upload the request and the
source (resumable), then start the stack's state machine with an execution named after the
job, so a repeated start is harmless. poll: the execution's status plus the workers'
progress objects in S3 — no Batch calls on the common path, so polling a dozen jobs stays
cheap. cancel: StopExecution, then TerminateJob for every chunk job the execution started
(Step Functions alone leaves them running). The jobs panel draws these rows like any other.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws.errors import CloudError, cloud_error
from vsr_desktop.backends.aws.stack import DEFAULT_STACK_NAME, StackInfo, describe_stack
from vsr_desktop.backends.aws.transfer import BytesProgress, download_file, upload_file
from vsr_desktop.core.errors import CancelledError, InputError
from vsr_desktop.core.jobs import JobRecord, JobState, JobStore
from vsr_desktop.core.plan import plan_chunks
from vsr_desktop.worker.request import (
    UpscaleRequest,
    request_to_dict,
    user_model_files,
    validate_request,
)
from vsr_desktop.worker.s3_transfer import model_name

_EXECUTION_FINISHED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
_BATCH_FINISHED = {"SUCCEEDED", "FAILED"}


@dataclass(frozen=True)
class JobLocation:
    """Where one job's objects live: s3://bucket/jobs/<id>/ (docs/cloud-contract.md)."""

    bucket: str
    job_id: str

    @property
    def prefix(self) -> str:
        return f"jobs/{self.job_id}/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/jobs/{self.job_id}"

    def key(self, name: str) -> str:
        return self.prefix + name

    def source_key(self, source: Path) -> str:
        return self.key(f"input/source{source.suffix.lower()}")

    def output_key(self, output: Path) -> str:
        return self.key(f"output/{output.name}")


@dataclass(frozen=True)
class ChunkProgress:
    state: str
    frames_done: int
    seconds: float
    message: str


class AwsBackend:
    """One AWS account and region, through the app's stack."""

    name = "aws"

    def __init__(self, store: JobStore, session: Any, stack_name: str = DEFAULT_STACK_NAME,
                 part_size: int | None = None, stack: StackInfo | None = None) -> None:
        self.store = store
        self.session = session
        self.stack_name = stack.name if stack is not None else stack_name
        self.part_size = part_size
        self._stack = stack
        self._clients: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def stack(self) -> StackInfo:
        if self._stack is None:
            info = describe_stack(self.session, self.stack_name)
            if info is None or not info.ready:
                raise CloudError(f"the cloud stack {self.stack_name} is not set up in "
                                 f"{self.session.region_name}",
                                 "run `vsr cloud setup` (or Cloud → Set up in the app) first")
            self._stack = info
        return self._stack

    @staticmethod
    def aws_state(job: JobRecord) -> dict[str, Any]:
        state = job.settings.get("aws", {})
        return dict(state) if isinstance(state, dict) else {}

    def _remember(self, job_id: str, **changes: Any) -> None:
        """Backend state (upload id, execution ARN, tries) lives in the job's settings."""
        job = self.store.get(job_id)
        settings = dict(job.settings)
        settings["aws"] = {**self.aws_state(job), **changes}
        self.store.update(job_id, settings=settings)

    # ------------------------------------------------------------------ submit
    def create_job(self, request: UpscaleRequest, price_per_gpu_hour: float | None = None,
                   ) -> JobRecord:
        """Check the request here and record the job; nothing is sent yet."""
        media = validate_request(request)
        user_model_files(request.model)  # a .param without its .bin fails here, not on Batch
        plan = plan_chunks(media.video, request.chunk_seconds)
        stack = self.stack()
        job_id = JobStore.new_id()
        where = JobLocation(stack.output("BucketName"), job_id)
        settings: dict[str, Any] = {**request.identity(), "aws": {
            "bucket": where.bucket, "region": self.session.region_name,
            "stack": self.stack_name, "state_machine": stack.output("StateMachineArn"),
            "price_per_gpu_hour": price_per_gpu_hour, "downloaded": False,
            "overwrite": request.overwrite,
        }}
        return self.store.add(JobRecord(
            id=job_id, name=request.source.name, backend=self.name,
            source=str(request.source.resolve()), output=str(request.output.resolve()),
            settings=settings, work_dir=where.uri, phase="uploading",
            frames_total=media.video.frame_count, chunks_total=len(plan.chunks),
        ))

    def submit(self, request: UpscaleRequest, job: JobRecord | None = None, *,
               on_upload: BytesProgress | None = None, cancel: threading.Event | None = None,
               price_per_gpu_hour: float | None = None) -> JobRecord:
        """Upload (resuming an interrupted upload) and start the execution; returns the job.

        With an existing job whose upload finished, this is a retry: a new execution runs,
        and the workers skip the chunks already in S3.
        """
        if job is None:
            job = self.create_job(request, price_per_gpu_hour)
        elif self.aws_state(job).get("execution_arn"):
            return self.start(job)
        where = self.location(job)
        s3 = self.client("s3")
        self.store.update(job.id, state=JobState.RUNNING, phase="uploading", message="",
                          pid=os.getpid())  # an upload cut off by a crash reads INTERRUPTED
        try:
            s3.put_object(Bucket=where.bucket, Key=where.key("job.json"),
                          Body=json.dumps(request_to_dict(request)).encode())
            # The user's own model file goes with the job: workers cannot read this disk.
            for path in user_model_files(request.model):
                with open(path, "rb") as model_file:
                    s3.put_object(Bucket=where.bucket, Key=where.key(model_name(path.name)),
                                  Body=model_file)
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("sending the job", exc) from exc
        except OSError as exc:
            raise InputError(f"cannot read the model file: {exc}",
                             "check the model file, then retry the job") from exc

        def progress(done: int, total: int) -> None:
            self.store.update(job.id, phase=f"uploading {done * 100 // max(total, 1)}%")
            if on_upload is not None:
                on_upload(done, total)

        try:
            upload_file(s3, request.source, where.bucket, where.source_key(request.source),
                        upload_id=self.aws_state(job).get("upload_id"),
                        on_upload_id=lambda uid: self._remember(job.id, upload_id=uid),
                        on_progress=progress, cancel=cancel, part_size=self.part_size)
        except CancelledError:
            self.store.update(job.id, state=JobState.CANCELLED, phase="", pid=None,
                              message="upload paused; retry to continue it")
            raise
        except CloudError as exc:
            self.store.update(job.id, state=JobState.FAILED, phase="", pid=None,
                              message=exc.user_message())
            raise
        self._remember(job.id, upload_id=None)
        return self.start(self.store.get(job.id))

    def start(self, job: JobRecord) -> JobRecord:
        """Start (or find) the execution for this try of the job."""
        state = self.aws_state(job)
        tries = int(state.get("tries", 0))
        name = job.id if tries == 0 else f"{job.id}-retry{tries}"
        where = self.location(job)
        chunks = [str(i) for i in range(job.chunks_total)]
        sfn = self.client("stepfunctions")
        machine = str(state.get("state_machine") or self.stack().output("StateMachineArn"))
        payload = json.dumps({"job_id": job.id, "job_uri": where.uri, "chunks": chunks})
        try:
            arn = sfn.start_execution(stateMachineArn=machine, name=name,
                                      input=payload)["executionArn"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise cloud_error("starting the job", exc) from exc
            arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        except BotoCoreError as exc:
            raise cloud_error("starting the job", exc) from exc
        self._remember(job.id, execution_arn=arn, tries=tries + 1,
                       started_at=time.time())
        self.store.update(job.id, state=JobState.RUNNING, phase="waiting for capacity",
                          message="", pid=None)
        return self.store.get(job.id)

    def location(self, job: JobRecord) -> JobLocation:
        bucket = self.aws_state(job).get("bucket")
        if not bucket:
            raise CloudError(f"job {job.id} has no S3 location", "submit it again")
        return JobLocation(str(bucket), job.id)

    # ------------------------------------------------------------------ poll
    def poll(self, job: JobRecord) -> JobRecord:
        """Refresh one row from the execution and the progress objects."""
        job = self.store.get(job.id)  # the caller's copy may predate a cancel
        if job.state.is_finished:
            return job
        arn = self.aws_state(job).get("execution_arn")
        if not arn:
            return job  # still uploading (or the upload was interrupted)
        try:
            execution = self.client("stepfunctions").describe_execution(executionArn=arn)
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("reading the job's progress", exc) from exc
        status = execution["status"]
        progress = self.read_progress(job)
        chunk_states = {i: p for i, p in progress.items() if isinstance(i, int)}
        frames = sum(p.frames_done for p in chunk_states.values())
        done = sum(p.state == "done" for p in chunk_states.values())
        changes: dict[str, Any] = {
            "frames_done": min(frames, job.frames_total), "chunks_done": done,
            "cost_usd": self._cost(job, chunk_states),
        }
        if status == "SUCCEEDED":
            changes.update(state=JobState.COMPLETED, phase="", frames_done=job.frames_total,
                           chunks_done=job.chunks_total,
                           message="finished in the cloud; download to get the output")
        elif status in _EXECUTION_FINISHED:
            changes.update(state=JobState.FAILED if status != "ABORTED" else JobState.CANCELLED,
                           phase="", message=self._failure(execution, chunk_states))
        else:
            changes.update(state=JobState.RUNNING,
                           phase=self._phase(progress, done, job.chunks_total))
        self.store.update(job.id, unless_finished=True, **changes)
        return self.store.get(job.id)

    def read_progress(self, job: JobRecord) -> dict[int | str, ChunkProgress]:
        """The workers' progress objects: chunk index (or 'split'/'merge') → progress."""
        where = self.location(job)
        s3 = self.client("s3")
        found: dict[int | str, ChunkProgress] = {}
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=where.bucket, Prefix=where.key("progress/"))
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            for key in keys:
                data = json.loads(s3.get_object(Bucket=where.bucket, Key=key)["Body"].read())
                stem = Path(key).stem
                name: int | str = int(stem.split("_")[1]) if stem.startswith("chunk_") else stem
                fps = float(data.get("fps") or 0.0)
                frames = int(data.get("frames_done", 0))
                found[name] = ChunkProgress(
                    state=str(data.get("state", "")), frames_done=frames,
                    seconds=frames / fps if fps > 0 else 0.0,
                    message=str(data.get("message", "")))
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("reading the job's progress", exc) from exc
        except (ValueError, IndexError, TypeError):
            pass  # a half-written or foreign object: the next poll reads it again
        return found

    @staticmethod
    def _phase(progress: dict[int | str, ChunkProgress], done: int, total: int) -> str:
        merge, split = progress.get("merge"), progress.get("split")
        if merge is not None:
            return "merging"
        if split is None:
            return "waiting for capacity"
        if split.state != "done":
            return "splitting"
        if not any(p.state == "running" for k, p in progress.items() if isinstance(k, int)):
            return f"waiting for GPU capacity ({done}/{total} chunks)"
        return f"running {done}/{total} chunks"

    def _cost(self, job: JobRecord, chunks: dict[int, ChunkProgress]) -> float | None:
        """GPU seconds the workers reported × the Spot price recorded at submit (estimate)."""
        price = self.aws_state(job).get("price_per_gpu_hour")
        if price is None:
            return job.cost_usd
        return float(price) * sum(p.seconds for p in chunks.values()) / 3600.0

    def _failure(self, execution: dict[str, Any], chunks: dict[int, ChunkProgress]) -> str:
        failed = [(i, p) for i, p in sorted(chunks.items()) if p.state == "failed"]
        if failed:
            index, chunk = failed[0]
            return f"chunk {index} failed: {chunk.message}"
        cause = str(execution.get("cause") or "")
        error = str(execution.get("error") or execution.get("status"))
        try:  # a Batch failure's cause is the job description as JSON
            detail = json.loads(cause)
            cause = str(detail.get("StatusReason") or detail.get("statusReason") or
                        detail.get("Cause") or cause)
        except (ValueError, AttributeError):
            pass
        return f"{error}: {cause}"[:500] if cause else error

    # ------------------------------------------------------------------ cancel
    def cancel(self, job: JobRecord) -> list[str]:
        """Stop the execution and terminate its Batch jobs; returns the jobs terminated."""
        arn = self.aws_state(job).get("execution_arn")
        terminated: list[str] = []
        if arn:
            sfn = self.client("stepfunctions")
            try:
                sfn.stop_execution(executionArn=arn, error="Cancelled",
                                   cause="cancelled from vsr_desktop")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                    raise cloud_error("cancelling the job", exc) from exc
            except BotoCoreError as exc:
                raise cloud_error("cancelling the job", exc) from exc
            terminated = self._terminate_batch_jobs(job, arn)
        self.store.update(job.id, state=JobState.CANCELLED, phase="",
                          message="cancelled; retry to continue from the finished chunks")
        return terminated

    def batch_job_ids(self, execution_arn: str) -> list[str]:
        """Batch jobs this execution submitted, from its history (TaskSubmitted events)."""
        sfn = self.client("stepfunctions")
        ids: list[str] = []
        try:
            pages = sfn.get_paginator("get_execution_history").paginate(
                executionArn=execution_arn)
            for page in pages:
                for event in page.get("events", []):
                    details = event.get("taskSubmittedEventDetails") or {}
                    if details.get("resourceType") != "batch":
                        continue
                    try:
                        output = json.loads(details.get("output") or "{}")
                    except ValueError:
                        continue
                    job_id = output.get("JobId") or output.get("jobId")
                    if job_id:
                        ids.append(str(job_id))
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("listing the job's Batch jobs", exc) from exc
        return ids

    def queued_batch_job_ids(self, job: JobRecord) -> list[str]:
        """Unfinished Batch jobs named after this job on the stack's queues.

        The history only lists a job once its submission returned; a job caught mid-submit
        (or one the history has not shown yet) is found here by its name.
        """
        batch = self.client("batch")
        stack = self.stack()
        ids: list[str] = []
        for queue_key in ("GpuJobQueueArn", "CpuJobQueueArn"):
            queue = stack.outputs.get(queue_key)
            if not queue:
                continue
            try:
                pages = batch.get_paginator("list_jobs").paginate(
                    jobQueue=queue,
                    filters=[{"name": "JOB_NAME", "values": [f"vsr-{job.id}-*"]}])
                for page in pages:
                    ids.extend(item["jobId"] for item in page.get("jobSummaryList", [])
                               if item.get("status") not in _BATCH_FINISHED)
            except (ClientError, BotoCoreError) as exc:
                raise cloud_error("listing the job's Batch jobs", exc) from exc
        return ids

    def _terminate_batch_jobs(self, job: JobRecord, execution_arn: str) -> list[str]:
        batch = self.client("batch")
        ids = list(dict.fromkeys(self.batch_job_ids(execution_arn) +
                                 self.queued_batch_job_ids(job)))
        terminated = []
        for start in range(0, len(ids), 100):
            try:
                described = batch.describe_jobs(jobs=ids[start:start + 100])["jobs"]
            except (ClientError, BotoCoreError) as exc:
                raise cloud_error("reading the job's Batch jobs", exc) from exc
            for item in described:
                if item["status"] in _BATCH_FINISHED:
                    continue
                try:
                    batch.terminate_job(jobId=item["jobId"], reason="cancelled from vsr_desktop")
                except (ClientError, BotoCoreError) as exc:
                    raise cloud_error("stopping a Batch job", exc) from exc
                terminated.append(item["jobId"])
        return terminated

    # ------------------------------------------------------------------ download
    def download(self, job: JobRecord, *, on_progress: BytesProgress | None = None,
                 cancel: threading.Event | None = None,
                 target: Path | None = None) -> Path:
        """Fetch the finished output to the job's output path (or `target`)."""
        if job.state != JobState.COMPLETED:
            raise CloudError(f"job {job.id} has not finished ({job.state.value})",
                             "wait until it completes")
        output = Path(job.output) if target is None else target
        if output.exists() and not self.aws_state(job).get("overwrite") and target is None:
            raise InputError(f"{output} already exists", "move it away, or download to "
                             "another file")
        where = self.location(job)
        self.store.update(job.id, phase="downloading")

        def progress(done: int, total: int) -> None:
            self.store.update(job.id, phase=f"downloading {done * 100 // max(total, 1)}%")
            if on_progress is not None:
                on_progress(done, total)

        try:
            download_file(self.client("s3"), where.bucket, where.output_key(Path(job.output)),
                          output, on_progress=progress, cancel=cancel)
        finally:
            self.store.update(job.id, phase="")
        self._remember(job.id, downloaded=True)
        self.store.update(job.id, message=f"downloaded to {output}")
        return output


BackendFactory = Callable[[JobRecord], AwsBackend]
