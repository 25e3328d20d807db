"""WORKAROUND FOR A MOTO BUG, IN THE TEST FIXTURE ONLY — not part of the app, never shipped.

getmoto/moto#10076: moto's Step Functions interpreter (a port of LocalStack's) left
`StateTaskService._normalise_parameters` and `_normalise_response` as no-ops. Real Step
Functions converts a Batch task's PascalCase parameters (`JobName`, `JobQueue`,
`ContainerOverrides.Environment[].Name` …) to the API's casing and the API's reply back to
PascalCase (`JobId`, `Status` …); moto passes them through unchanged, so every
`batch:submitJob(.sync)` task ends in States.Runtime and a state machine that is correct on
AWS cannot run in moto.

`apply()` restores that conversion from botocore's operation model, for the Batch
integration only (the one our state machine uses), by patching the interpreter's class in
this process. The session's ThreadedMotoServer runs in this process, so its interpreter
sees the patch. tests/aws_fixture.py calls `apply()` before it starts the server. Remove
this module once moto fixes the bug.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_PATCHED_FLAG = "_vsr_normalisation_restored"


@lru_cache(maxsize=8)
def _operation_model(service_name: str, snake_action: str) -> Any:
    """botocore's model of one operation, found by its snake_case name (submit_job)."""
    import botocore.session
    from botocore import xform_name

    service = botocore.session.get_session().get_service_model(service_name)
    by_snake = {xform_name(name): name for name in service.operation_names}
    return service.operation_model(by_snake[snake_action])


def apply() -> None:
    """Give moto's Batch task the request/response normalisation real Step Functions does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch,
    )

    batch_task = state_task_service_batch.StateTaskServiceBatch
    if getattr(batch_task, _PATCHED_FLAG, False):
        return

    def normalise_parameters(
        self: Any,
        parameters: dict[str, Any],
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        model = _operation_model(
            self._get_boto_service_name(boto_service_name),
            self._get_boto_service_action(service_action_name),
        )
        if model.input_shape is not None:
            self._to_boto_request(parameters, model.input_shape)

    def normalise_response(
        self: Any,
        response: Any,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        model = _operation_model(
            self._get_boto_service_name(boto_service_name),
            self._get_boto_service_action(service_action_name),
        )
        if model.output_shape is not None:
            self._from_boto_response(response, model.output_shape)

    setattr(batch_task, "_normalise_parameters", normalise_parameters)  # noqa: B010
    setattr(batch_task, "_normalise_response", normalise_response)  # noqa: B010
    setattr(batch_task, _PATCHED_FLAG, True)
