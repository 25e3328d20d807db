"""The AWS backend: submit, poll, cancel, resume, fetch and remove jobs in the user's account.

submit: check the spec here (the estimate needs the probe and plan anyway) and record the
job, then upload the source (resumable), the user's model file if any, and the spec as one
object (spec.json, written last), and start the stack's state machine with an execution
named after the job, so a repeated start is harmless. poll: the execution's status plus
the workers' progress objects in S3 — no Batch calls on the common path, so polling a dozen
jobs stays cheap. cancel: StopExecution, then TerminateJob for every chunk job the execution
started (Step Functions alone leaves them running). resume: a new execution; the workers
skip the chunks already in S3 (restart forgets them). Where each object lives is
worker/s3_layout.py, shared with the workers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vsr_desktop.backends.aws import cost_cap
from vsr_desktop.backends.aws.cost_cap import CAP_KEY
from vsr_desktop.backends.aws.errors import CloudError, cloud_error
from vsr_desktop.backends.aws.image_download import check_output_free, download_result
from vsr_desktop.backends.aws.session import CloudCredentials
from vsr_desktop.backends.aws.stack import DEFAULT_STACK_NAME, StackInfo, describe_stack
from vsr_desktop.backends.aws.transfer import BytesProgress, upload_file
from vsr_desktop.backends.protocol import Progress, ProgressCallback
from vsr_desktop.core.errors import CancelledError, InputError, JobError, VsrError
from vsr_desktop.core.job_spec import JobSpec
from vsr_desktop.core.jobs import VERIFY_REPORT_KEY, JobRecord, JobState, JobStore
from vsr_desktop.core.media.probe import probe
from vsr_desktop.core.redact import redact_secrets
from vsr_desktop.core.trim import plan_for
from vsr_desktop.worker.job_report import summary, verify_output
from vsr_desktop.worker.job_setup import (
    check_source_unchanged,
    spec_of,
    user_model_files,
    validate_spec,
)
from vsr_desktop.worker.s3_layout import (
    PROGRESS_FOLDER,
    SPEC_FILE,
    WORKER_MADE,
    JobLocation,
    model_name,
    progress_stage,
)

_EXECUTION_FINISHED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
_BATCH_FINISHED = {"SUCCEEDED", "FAILED"}


@dataclass(frozen=True)
class ChunkProgress:
    state: str
    frames_done: int
    seconds: float
    message: str


class AwsBackend:
    """One AWS account and region, through the app's stack."""

    name = "aws"
    runs_in_process = False

    def __init__(
        self,
        store: JobStore,
        session: Any,
        stack_name: str = DEFAULT_STACK_NAME,
        part_size: int | None = None,
        stack: StackInfo | None = None,
        credentials: CloudCredentials | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.stack_name = stack.name if stack is not None else stack_name
        self.part_size = part_size
        self.credentials = credentials
        self._stack = stack
        self._clients: dict[str, Any] = {}
        self._preflight_done = False

    @classmethod
    def for_job(cls, store: JobStore, job: JobRecord | None) -> AwsBackend:
        """The backend for the account, region and stack `job` was sent to (its spec's
        target), or for the app's saved cloud settings when there is no job or no target."""
        from vsr_desktop.backends.aws.session import open_session

        credentials, stack_name = job_credentials(job)
        return cls(store, open_session(credentials), stack_name, credentials=credentials)

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def stack(self) -> StackInfo:
        if self._stack is None:
            info = describe_stack(self.session, self.stack_name)
            if info is None or not info.ready:
                raise CloudError(
                    f"the cloud stack {self.stack_name} is not set up in "
                    f"{self.session.region_name}",
                    "run `vsr cloud setup` (or Cloud → Set up in the app) first",
                )
            self._stack = info
        return self._stack

    def target(self) -> dict[str, str]:
        """Where this backend sends jobs, as the spec records it: names only, no secrets."""
        creds = self.credentials
        profile = creds.profile if creds is not None else _explicit_profile(self.session)
        return {
            "region": str(self.session.region_name or ""),
            "profile": profile or "",
            "keychain_account": (creds.keychain_account or "") if creds else "",
            "stack": self.stack_name,
        }

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

    def location(self, job: JobRecord) -> JobLocation:
        bucket = self.aws_state(job).get("bucket")
        if not bucket:
            raise CloudError(f"job {job.id} has no S3 location", "submit it again")
        return JobLocation.for_job(str(bucket), job.id)

    def _fail(self, job_id: str, error: BaseException) -> None:
        """A submit or resume that stopped: FAILED with its reason (CANCELLED for a pause)."""
        if isinstance(error, CancelledError):
            self.store.update(
                job_id,
                state=JobState.CANCELLED,
                phase="",
                pid=None,
                message="upload paused; resume to continue it",
            )
            return
        text = redact_secrets(  # stored and shown: no credentials from echoed AWS replies
            error.user_message()
            if isinstance(error, VsrError)
            else f"{type(error).__name__}: {error}"
        )
        self.store.update(job_id, state=JobState.FAILED, phase="", pid=None, message=text)

    # ------------------------------------------------------------------ submit
    def create_job(
        self,
        spec: JobSpec,
        price_per_gpu_hour: float | None = None,
        max_cost_usd: float | None = None,
    ) -> JobRecord:
        """Check the spec here and record the job; nothing is sent yet.

        A spec that cannot run is refused with no record; once recorded, a failure (no
        stack, say) leaves the record FAILED with its reason, resumable and removable.
        `max_cost_usd` (else the spec's target's) is the job's cost cap (cost_cap.py).
        """
        media = validate_spec(spec)
        user_model_files(spec.engine.model)  # a .param without its .bin fails here, not on Batch
        plan = plan_for(spec, media)  # the split stage cuts the same chunks (and trim)
        if price_per_gpu_hour is None:  # the app's dialog hands it over with the spec
            price = spec.target.get("price_per_gpu_hour")
            price_per_gpu_hour = float(price) if isinstance(price, (int, float)) else None
        cap = cost_cap.checked_cap(
            max_cost_usd if max_cost_usd is not None else spec.target.get(CAP_KEY)
        )
        if cap is not None and not price_per_gpu_hour:
            raise InputError(
                "a cost cap needs the Spot price the estimate uses",
                "submit through the estimate (the app's dialog, or `vsr cloud submit`)",
            )
        self.preflight()
        spec = replace(
            spec,
            backend=self.name,
            source=spec.source.expanduser().resolve(),
            output=spec.output.expanduser().resolve(),
            target=self.target(),
        )
        if spec.source_identity is None:
            spec = spec.with_source_identity()
        job = self.store.add(
            JobRecord(
                id=JobStore.new_id(),
                name=spec.source.name,
                backend=self.name,
                source=str(spec.source),
                output=str(spec.output),
                spec=spec,
                settings={
                    "aws": {
                        "region": self.session.region_name,
                        "stack": self.stack_name,
                        "price_per_gpu_hour": price_per_gpu_hour,
                        CAP_KEY: cap,
                        "downloaded": False,
                    }
                },
                state=JobState.RUNNING,
                phase="preparing",
                pid=os.getpid(),  # a crash: INTERRUPTED
                frames_total=plan.frame_count,
                chunks_total=len(plan.chunks),
            )
        )
        try:
            self._locate(job)
        except Exception as exc:
            self._fail(job.id, exc)
            raise
        self._remember(
            job.id,
            chunk_timeout_seconds=self._chunk_timeout(
                media.video.width, media.video.height, [c.frame_count for c in plan.chunks], spec
            ),
        )
        return self.store.get(job.id)

    def _chunk_timeout(
        self, width: int, height: int, frame_counts: list[int], spec: JobSpec
    ) -> int:
        """Each chunk job's time limit, from the throughput table and the stack's GPU types
        (cost.chunk_timeout_seconds; the state machine passes it to SubmitJob)."""
        from vsr_desktop.backends.aws import stack_template as tpl
        from vsr_desktop.backends.aws.cost import chunk_timeout_for

        stack = self.stack()
        types = stack.list_parameter(tpl.PARAM_GPU_INSTANCE_TYPES) or tpl.parameter_defaults()[
            tpl.PARAM_GPU_INSTANCE_TYPES
        ].split(",")
        return chunk_timeout_for(width, height, frame_counts, spec.engine, types)

    def _locate(self, job: JobRecord) -> None:
        """Record the stack's bucket and state machine for the job (its S3 prefix)."""
        stack = self.stack()
        where = JobLocation.for_job(stack.output("BucketName"), job.id)
        self._remember(job.id, bucket=where.bucket, state_machine=stack.output("StateMachineArn"))
        self.store.update(job.id, work_dir=where.uri)

    def submit(
        self,
        spec: JobSpec,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        job: JobRecord | None = None,
        on_upload: BytesProgress | None = None,
        price_per_gpu_hour: float | None = None,
        max_cost_usd: float | None = None,
    ) -> JobRecord:
        """Record the job (or take `job`, made by create_job), upload what it needs (resuming
        an interrupted upload) and start the execution; returns the job, RUNNING.

        A cancel pauses the upload (CANCELLED, resumable); any other failure leaves the
        job FAILED with the reason in its message, and is raised."""
        if job is None:
            job = self.create_job(spec, price_per_gpu_hour, max_cost_usd)
        return self._send(self.store.get(job.id), progress, cancel, on_upload)

    def _send(
        self,
        job: JobRecord,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        on_upload: BytesProgress | None,
    ) -> JobRecord:
        """Upload what is not in S3 yet, write the spec, start an execution."""
        uploading = not self._uploaded(job)
        if progress is not None:  # at once: the caller learns the job's id before any upload
            size = (
                Path(job.source).stat().st_size if uploading and Path(job.source).is_file() else 0
            )
            progress(
                Progress(
                    job.id,
                    "uploading" if uploading else "starting",
                    0,
                    size,
                    0,
                    job.chunks_total,
                    0.0,
                    None,
                )
            )
        try:
            if not self.aws_state(job).get("bucket"):
                self._locate(job)
            if uploading:
                self._upload(self.store.get(job.id), progress, cancel, on_upload)
            self._put_spec(self.store.get(job.id))
            return self.start(self.store.get(job.id))
        except Exception as exc:  # CancelledError included: a paused upload
            self._fail(job.id, exc)
            raise
        except BaseException:  # the process is going away: resumable, as after a crash
            self.store.update(
                job.id,
                state=JobState.INTERRUPTED,
                phase="",
                pid=None,
                message="interrupted while sending; resume to continue",
            )
            raise

    def _uploaded(self, job: JobRecord) -> bool:
        state = self.aws_state(job)
        return bool(state.get("uploaded") or state.get("execution_arn"))

    def _upload(
        self,
        job: JobRecord,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        on_upload: BytesProgress | None,
    ) -> None:
        """The model file(s), then the source (multipart, resumable); spec.json follows."""
        spec = spec_of(job)
        where = self.location(job)
        s3 = self.client("s3")
        self.store.update(
            job.id, state=JobState.RUNNING, phase="uploading", message="", pid=os.getpid()
        )  # an upload cut off by a crash reads INTERRUPTED
        # An upload resumed over a replaced file would splice two sources: refuse it.
        check_source_unchanged(spec, job_id=job.id)
        try:
            # The user's own model file goes with the job: workers cannot read this disk.
            for path in user_model_files(spec.engine.model):
                with open(path, "rb") as model_file:
                    s3.put_object(
                        Bucket=where.bucket, Key=where.key(model_name(path.name)), Body=model_file
                    )
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("sending the model file", exc) from exc
        except OSError as exc:
            raise InputError(
                f"cannot read the model file: {exc}", "check the model file, then resume the job"
            ) from exc

        def report(done: int, total: int) -> None:
            self.store.update(job.id, phase=f"uploading {done * 100 // max(total, 1)}%")
            if on_upload is not None:
                on_upload(done, total)
            if progress is not None:  # a transfer phase: the counts are bytes
                progress(Progress(job.id, "uploading", done, total, 0, job.chunks_total, 0.0, None))

        upload_file(
            s3,
            spec.source,
            where.bucket,
            where.source_key(spec.source),
            upload_id=self.aws_state(job).get("upload_id"),
            on_upload_id=lambda uid: self._remember(job.id, upload_id=uid),
            on_progress=report,
            cancel=cancel,
            part_size=self.part_size,
        )
        self._remember(job.id, upload_id=None, uploaded=True)

    def _put_spec(self, job: JobRecord) -> None:
        """The job's spec as the one object the workers read (written after the inputs, so
        a job whose spec exists in S3 has its whole input there; again on every resume, so
        it is always the stored spec)."""
        where = self.location(job)
        try:
            self.client("s3").put_object(
                Bucket=where.bucket,
                Key=where.key(SPEC_FILE),
                Body=spec_of(job).to_json().encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as exc:
            raise cloud_error("sending the job spec", exc) from exc

    def start(self, job: JobRecord) -> JobRecord:
        """Start (or find) the execution for this try of the job."""
        state = self.aws_state(job)
        tries = int(state.get("tries", 0))
        name = job.id if tries == 0 else f"{job.id}-retry{tries}"
        where = self.location(job)
        chunks = [str(i) for i in range(job.chunks_total)]
        sfn = self.client("stepfunctions")
        machine = str(state.get("state_machine") or self.stack().output("StateMachineArn"))
        execution_input: dict[str, Any] = {"job_id": job.id, "job_uri": where.uri, "chunks": chunks}
        limit = self.chunk_time_limit(job)
        if limit:  # else the state machine's default applies
            execution_input["chunk_timeout_seconds"] = limit
        payload = json.dumps(execution_input)
        try:
            arn = sfn.start_execution(stateMachineArn=machine, name=name, input=payload)[
                "executionArn"
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise cloud_error("starting the job", exc) from exc
            arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        except BotoCoreError as exc:
            raise cloud_error("starting the job", exc) from exc
        self._remember(job.id, execution_arn=arn, tries=tries + 1, started_at=time.time())
        self.store.update(
            job.id, state=JobState.RUNNING, phase="waiting for capacity", message="", pid=None
        )
        return self.store.get(job.id)

    def chunk_time_limit(self, job: JobRecord) -> int | None:
        """The chunk jobs' Batch time limit: the throughput table's, lowered to the job's
        share of its cost cap (the bound that holds with the app closed; cost_cap.py)."""
        state = self.aws_state(job)
        table = state.get(cost_cap.TABLE_TIMEOUT_KEY)
        price = state.get("price_per_gpu_hour")
        return cost_cap.chunk_time_limit(
            int(table) if table else None,
            state.get(CAP_KEY),
            float(price) if price else None,
            job.chunks_total,
        )

    def set_cost_cap(self, job: JobRecord, max_cost_usd: float | None) -> JobRecord:
        """A new cap (None: none) for the job's next execution (`vsr cloud retry --max-cost`)."""
        cap = cost_cap.checked_cap(max_cost_usd)
        if cap is not None and not self.aws_state(job).get("price_per_gpu_hour"):
            raise InputError(
                f"job {job.id} has no Spot price recorded, so no cap can be reckoned",
                "submit it again through the estimate",
            )
        self._remember(job.id, **{CAP_KEY: cap})
        return self.store.get(job.id)

    def preflight(self) -> None:
        """The account checks before anything is recorded or spent (preflight.py): the GPU
        Spot quota and the worker image in ECR. Once per backend: they do not change
        between the jobs of one submit."""
        if self._preflight_done:
            return
        from vsr_desktop.backends.aws.preflight import check_account

        try:
            stack = self.stack()
        except CloudError:
            return  # no stack: the job is recorded FAILED with that reason (create_job)
        check_account(self.session, stack)
        self._preflight_done = True

    # ------------------------------------------------------------------ resume
    def resume(
        self,
        job: JobRecord,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        *,
        restart: bool = False,
        overwrite: bool = False,
        on_upload: BytesProgress | None = None,
    ) -> JobRecord:
        """Finish a paused upload, or run a failed/cancelled job again in a new execution
        (the workers skip chunks already in S3). restart: forget the finished chunks (and
        upload the source again if it changed); overwrite: the download may replace an
        existing output."""
        job = self.poll(job)
        spec = spec_of(job)
        if overwrite and not spec.overwrite:
            # A finished job too: its download may now replace an existing output.
            self.store.update(job.id, spec=replace(spec, overwrite=True))
            job = self.store.get(job.id)
        if job.state is JobState.COMPLETED and not restart:
            return job
        self._refuse_if_running(job)
        if restart:
            self._forget_work(self.store.get(job.id))
        return self._send(self.store.get(job.id), progress, cancel, on_upload)

    def _refuse_if_running(self, job: JobRecord) -> None:
        if job.state is not JobState.RUNNING:
            return
        if job.pid is not None:  # alive: the store marks a dead uploader's job INTERRUPTED
            raise JobError(
                f"job {job.id} is being sent to AWS by process {job.pid}",
                "wait for the upload, or stop it there (Cancel, or Ctrl+C)",
            )
        raise JobError(
            f"job {job.id} is running in the cloud", "wait for it to finish, or cancel it first"
        )

    def _forget_work(self, job: JobRecord) -> None:
        """What a restart forgets: every object the workers made (chunks, plan, progress,
        output). A source changed here since the upload is recorded and sent again."""
        spec = spec_of(job)
        if job.work_dir and self.aws_state(job).get("bucket"):
            self._delete_objects(self.location(job), WORKER_MADE)
        changes: dict[str, Any] = {"downloaded": False}
        source = spec.source.expanduser()
        if source.is_file():
            fresh = spec.with_source_identity()
            if spec.source_identity is None or spec.source_identity.differences(
                source, check_mtime=True
            ):
                self.store.update(job.id, spec=fresh)
                self._abort_upload(job)
                changes.update(uploaded=False, upload_id=None, execution_arn=None)
        self._remember(job.id, **changes)
        self.store.update(job.id, frames_done=0, chunks_done=0, cost_usd=None)

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
            "frames_done": min(frames, job.frames_total),
            "chunks_done": done,
            "cost_usd": self._cost(job, chunk_states),
        }
        if status == "SUCCEEDED":
            changes.update(
                state=JobState.COMPLETED,
                phase="",
                frames_done=job.frames_total,
                chunks_done=job.chunks_total,
                message="finished in the cloud; download to get the output",
            )
        elif status in _EXECUTION_FINISHED:
            changes.update(
                state=JobState.FAILED if status != "ABORTED" else JobState.CANCELLED,
                phase="",
                message=self._failure(execution, chunk_states),
            )
        else:
            changes.update(
                state=JobState.RUNNING, phase=self._phase(progress, done, job.chunks_total)
            )
        cap = self.aws_state(job).get(CAP_KEY)
        cost = changes["cost_usd"]
        if status not in _EXECUTION_FINISHED and cap is not None and cost_cap.over_cap(cost, cap):
            return self._stop_over_cap(job, float(cost), float(cap))
        if "message" in changes and status != "SUCCEEDED":
            changes["message"] = cost_cap.explain_timeout(
                changes["message"], cap, self.chunk_time_limit(job)
            )
        self.store.update(job.id, unless_finished=True, **changes)
        return self.store.get(job.id)

    def _stop_over_cap(self, job: JobRecord, cost: float, cap: float) -> JobRecord:
        """The monitor's half of the cost cap: stop the execution and terminate the job's
        Batch jobs at once; FAILED, with the reason in the row."""
        terminated = self.stop(job, reason=f"vsr_desktop cost cap ${cap:.2f} reached")
        self.store.update(
            job.id,
            state=JobState.FAILED,
            cost_usd=cost,
            message=cost_cap.stopped_message(cost, cap, len(terminated)),
        )
        return self.store.get(job.id)

    def read_progress(self, job: JobRecord) -> dict[int | str, ChunkProgress]:
        """The workers' progress objects: chunk index (or 'split'/'merge') → progress."""
        where = self.location(job)
        s3 = self.client("s3")
        found: dict[int | str, ChunkProgress] = {}
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=where.bucket, Prefix=where.key(PROGRESS_FOLDER)
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            for key in keys:
                name = progress_stage(key)
                if name is None:
                    continue
                data = json.loads(s3.get_object(Bucket=where.bucket, Key=key)["Body"].read())
                fps = float(data.get("fps") or 0.0)
                frames = int(data.get("frames_done", 0))
                found[name] = ChunkProgress(
                    state=str(data.get("state", "")),
                    frames_done=frames,
                    seconds=frames / fps if fps > 0 else 0.0,
                    message=str(data.get("message", "")),
                )
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
        """The job's Batch jobs' real start-to-stop times × the Spot price recorded at submit
        (running_cost), never less than the workers' reported GPU seconds × that price (all
        there is when Batch cannot be read)."""
        from vsr_desktop.backends.aws.running_cost import batch_cost_so_far

        price = self.aws_state(job).get("price_per_gpu_hour")
        if price is None:
            return job.cost_usd
        reported = float(price) * sum(p.seconds for p in chunks.values()) / 3600.0
        try:
            queues = [
                q
                for q in (self.stack().outputs.get(k) for k in ("GpuJobQueueArn", "CpuJobQueueArn"))
                if q
            ]
            billed = batch_cost_so_far(self.client("batch"), queues, job.id, float(price))
        except (ClientError, BotoCoreError, CloudError):
            return reported
        return max(billed, reported)

    def _failure(self, execution: dict[str, Any], chunks: dict[int, ChunkProgress]) -> str:
        return redact_secrets(self._failure_text(execution, chunks))  # Batch/container text

    def _failure_text(self, execution: dict[str, Any], chunks: dict[int, ChunkProgress]) -> str:
        failed = [(i, p) for i, p in sorted(chunks.items()) if p.state == "failed"]
        if failed:
            index, chunk = failed[0]
            return f"chunk {index} failed: {chunk.message}"
        cause = str(execution.get("cause") or "")
        error = str(execution.get("error") or execution.get("status"))
        try:  # a Batch failure's cause is the job description as JSON
            detail = json.loads(cause)
            cause = str(
                detail.get("StatusReason")
                or detail.get("statusReason")
                or detail.get("Cause")
                or cause
            )
        except (ValueError, AttributeError):
            pass
        from vsr_desktop.backends.aws.stack_template import capacity_wait_message

        waited = capacity_wait_message(cause, self._stack_parameter("MaxCapacityWaitSeconds"))
        if waited:  # the queue's jobStateTimeLimitActions cancelled a job that never started
            return f"{error}: {waited}"[:500]
        return f"{error}: {cause}"[:500] if cause else error

    def _stack_parameter(self, key: str) -> str | None:
        try:
            return self.stack().parameters.get(key) or None
        except CloudError:
            return None

    # ------------------------------------------------------------------ cancel
    def cancel(self, job: JobRecord) -> JobRecord:
        """Stop the execution and its Batch jobs; finished chunks stay in S3 for a resume."""
        job = self.store.get(job.id)
        if job.state.is_finished:
            return job
        if (
            not self.aws_state(job).get("execution_arn")
            and job.pid is not None
            and job.pid != os.getpid()
        ):
            raise JobError(
                f"job {job.id} is being sent to AWS by process {job.pid}",
                "stop the upload there (Cancel in the app, or Ctrl+C)",
            )
        self.stop(job)
        return self.store.get(job.id)

    def stop(self, job: JobRecord, reason: str = "cancelled from vsr_desktop") -> list[str]:
        """cancel, returning the Batch jobs it terminated (the CLI and the app count them)."""
        arn = self.aws_state(job).get("execution_arn")
        terminated: list[str] = []
        if arn:
            sfn = self.client("stepfunctions")
            try:
                sfn.stop_execution(executionArn=arn, error="Cancelled", cause=reason)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                    raise cloud_error("cancelling the job", exc) from exc
            except BotoCoreError as exc:
                raise cloud_error("cancelling the job", exc) from exc
            terminated = self._terminate_batch_jobs(job, arn, reason)
        stopped = f"; stopped {len(terminated)} Batch job(s)" if terminated else ""
        self.store.update(
            job.id,
            state=JobState.CANCELLED,
            phase="",
            pid=None,
            message=f"cancelled{stopped}; resume to continue from the finished chunks",
        )
        return terminated

    def batch_job_ids(self, execution_arn: str) -> list[str]:
        """Batch jobs this execution submitted, from its history (TaskSubmitted events)."""
        sfn = self.client("stepfunctions")
        ids: list[str] = []
        try:
            pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
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
                    jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [f"vsr-{job.id}-*"]}]
                )
                for page in pages:
                    ids.extend(
                        item["jobId"]
                        for item in page.get("jobSummaryList", [])
                        if item.get("status") not in _BATCH_FINISHED
                    )
            except (ClientError, BotoCoreError) as exc:
                raise cloud_error("listing the job's Batch jobs", exc) from exc
        return ids

    def _terminate_batch_jobs(
        self, job: JobRecord, execution_arn: str, reason: str = "cancelled from vsr_desktop"
    ) -> list[str]:
        batch = self.client("batch")
        ids = list(
            dict.fromkeys(self.batch_job_ids(execution_arn) + self.queued_batch_job_ids(job))
        )
        terminated = []
        for start in range(0, len(ids), 100):
            try:
                described = batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]
            except (ClientError, BotoCoreError) as exc:
                raise cloud_error("reading the job's Batch jobs", exc) from exc
            for item in described:
                if item["status"] in _BATCH_FINISHED:
                    continue
                try:
                    batch.terminate_job(jobId=item["jobId"], reason=reason)
                except (ClientError, BotoCoreError) as exc:
                    raise cloud_error("stopping a Batch job", exc) from exc
                terminated.append(item["jobId"])
        return terminated

    # ------------------------------------------------------------------ output
    def fetch_output(
        self,
        job: JobRecord,
        on_bytes: BytesProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Download the finished output to the job's output path (resumes a partial file)."""
        return self.download(job, on_progress=on_bytes, cancel=cancel)

    def download(
        self,
        job: JobRecord,
        *,
        on_progress: BytesProgress | None = None,
        cancel: threading.Event | None = None,
        target: Path | None = None,
    ) -> Path:
        """fetch_output, by its older name; `target` downloads a copy elsewhere."""
        job = self.store.get(job.id)
        if job.state != JobState.COMPLETED:
            raise CloudError(
                f"job {job.id} has not finished ({job.state.value})", "wait until it completes"
            )
        output = Path(job.output) if target is None else target
        if target is None:
            check_output_free(output, spec_of(job), job.id)
        where = self.location(job)
        self.store.update(job.id, phase="downloading")

        def progress(done: int, total: int) -> None:
            self.store.update(job.id, phase=f"downloading {done * 100 // max(total, 1)}%")
            if on_progress is not None:
                on_progress(done, total)

        try:
            download_result(
                self.client("s3"),
                where.bucket,
                where.output_key(job.output),
                output,
                spec_of(job).encode.codec,
                on_progress=progress,
                cancel=cancel,
            )
        finally:
            self.store.update(job.id, phase="")
        if target is None:
            self._remember(job.id, downloaded=True)
        self.store.update(job.id, message=f"downloaded to {output}")
        self._verify_download(job, output)
        return output

    def _verify_download(self, job: JobRecord, output: Path) -> None:
        """The "nothing lost" check, here where the source is (the cloud merge has only the
        chunks and the side file): stored with the job like every backend's report."""
        spec = spec_of(job)
        if not spec.source.expanduser().is_file():
            return  # moved or deleted since: the worker's note stays
        try:
            info = probe(spec.source.expanduser())
        except VsrError:
            return
        report = verify_output(info, spec, output)
        settings = {**self.store.get(job.id).settings, VERIFY_REPORT_KEY: report}
        message = f"downloaded to {output}; {summary(report)}"
        self.store.update(job.id, message=message, settings=settings)

    def needs_fetch(self, job: JobRecord) -> bool:
        return job.state is JobState.COMPLETED and self.aws_state(job).get("downloaded") is False

    def work_lost_on_remove(self, job: JobRecord) -> str:
        if self.needs_fetch(job):
            return (
                "The output is still in the cloud, not downloaded. Removing the job "
                "deletes it there."
            )
        if job.state is not JobState.COMPLETED and job.chunks_done > 0:
            return (
                f"{job.chunks_done} of {job.chunks_total} chunks are finished in the cloud. "
                "Removing the job deletes them: it can no longer be resumed, only "
                "submitted again."
            )
        return ""

    # ------------------------------------------------------------------ remove
    def remove(self, job: JobRecord) -> None:
        """Delete every object under the job's prefix (and an unfinished upload), then its
        record; never the local output. A job still running is refused: cancel it first."""
        job = self.store.get(job.id)
        if self.aws_state(job).get("execution_arn") and not job.state.is_finished:
            job = self.poll(job)  # the facts: it may have ended since the last look
        self._refuse_if_running(job)
        if self.aws_state(job).get("bucket"):
            self._abort_upload(job)
            self._delete_objects(self.location(job), ("",))
        self.store.delete(job.id)

    def _abort_upload(self, job: JobRecord) -> None:
        """Abort the job's unfinished multipart uploads (S3 bills their parts until then)."""
        where = self.location(job)
        s3 = self.client("s3")
        try:
            pages = s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=where.bucket, Prefix=where.folder
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    s3.abort_multipart_upload(
                        Bucket=where.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchUpload", "NoSuchBucket"}:
                raise cloud_error("abandoning the job's upload", exc) from exc
        except BotoCoreError as exc:
            raise cloud_error("abandoning the job's upload", exc) from exc

    def _delete_objects(self, where: JobLocation, names: tuple[str, ...]) -> int:
        """Delete the objects under each of `names` (relative to the job prefix, "" for all
        of them); returns how many went."""
        s3 = self.client("s3")
        removed = 0
        try:
            for name in names:
                pages = s3.get_paginator("list_objects_v2").paginate(
                    Bucket=where.bucket, Prefix=where.key(name) if name else where.folder
                )
                for page in pages:
                    keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                    for start in range(0, len(keys), 1000):
                        s3.delete_objects(
                            Bucket=where.bucket,
                            Delete={"Objects": keys[start : start + 1000], "Quiet": True},
                        )
                    removed += len(keys)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return removed
            raise cloud_error("deleting the job's files in S3", exc) from exc
        except BotoCoreError as exc:
            raise cloud_error("deleting the job's files in S3", exc) from exc
        return removed


def job_credentials(job: JobRecord | None) -> tuple[CloudCredentials, str]:
    """The credentials (names only) and stack name a job was sent with: its spec's target;
    for a job recorded before targets, or for new jobs, the app's saved cloud settings."""
    from vsr_desktop.core.settings import SettingsFile

    target = job.spec.target if job is not None and job.spec is not None else {}
    if target.get("region"):
        return (
            CloudCredentials(
                region=str(target["region"]),
                profile=str(target.get("profile") or "") or None,
                keychain_account=str(target.get("keychain_account") or "") or None,
            ),
            str(target.get("stack") or DEFAULT_STACK_NAME),
        )
    recorded = AwsBackend.aws_state(job) if job is not None else {}
    saved = SettingsFile().load()
    region = (
        str(recorded.get("region") or "")
        or saved.cloud_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or ""
    )
    profile = saved.cloud_profile or None
    credentials = CloudCredentials(
        region=region,
        profile=profile,
        keychain_account=None if profile else saved.cloud_keychain_account or None,
    )
    return credentials, str(recorded.get("stack") or saved.cloud_stack_name or DEFAULT_STACK_NAME)


def _explicit_profile(session: Any) -> str | None:
    """The profile a session was opened with (argument or AWS_PROFILE); None for the
    default chain, which the record then leaves to the default chain again."""
    name = getattr(session, "profile_name", None)
    if not name or name == "default" or name not in getattr(session, "available_profiles", []):
        return None
    return str(name)
