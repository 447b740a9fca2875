"""Errors raised while reading and running Power Platform connector definitions.

All derive from the gateway's own tree (`functions.errors`), so the API renders them as
problem+json with a stable `code`:

    DefinitionError          400 invalid_definition       a file that cannot be used as is
    PolicyEvaluationError    400 policy_evaluation_failed a policy could not compute a value
    PolicyNotSupportedError  501 policy_not_supported     the operation needs a feature we lack

Details name files, positions, policies and operations; never parameter values, which
may be secrets.
"""

from __future__ import annotations

from functions.errors import BadRequestError, GatewayError


class DefinitionError(BadRequestError):
    """A connector file that cannot be read or does not have the required structure.

    `str(error)` and `detail` read `<file>: line L column C: <reason>` when the position
    is known (JSON syntax errors; 1-based, as `json.JSONDecodeError` counts), otherwise
    `<file>: <pointer>: <reason>` (a JSON pointer such as `/paths`) or `<file>: <reason>`.
    """

    status = 400
    code = "invalid_definition"
    title = "Invalid connector definition"

    def __init__(
        self,
        file: str,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        pointer: str | None = None,
    ) -> None:
        if line is not None and column is not None:
            where = f"line {line} column {column}: "
        elif pointer is not None:
            where = f"{pointer or '/'}: "
        else:
            where = ""
        extra: dict[str, object] = {"file": file, "reason": reason}
        if line is not None:
            extra["line"] = line
            extra["column"] = column
        if pointer is not None:
            extra["pointer"] = pointer
        super().__init__(f"{file}: {where}{reason}", extra=extra)
        self.file = file
        self.reason = reason
        self.line = line
        self.column = column
        self.pointer = pointer


class PolicyNotSupportedError(GatewayError):
    """The operation depends on a policy template (or custom code) the gateway cannot run.

    Answered instead of sending a request that would silently behave differently from
    Power Platform. `feature` is the template id (e.g. `pollingtrigger`) or `script.csx`.
    """

    status = 501
    code = "policy_not_supported"
    title = "Policy not supported"

    def __init__(self, feature: str, operation_id: str | None, reason: str | None = None) -> None:
        target = f"operation {operation_id}" if operation_id else "calls without an operation"
        detail = f"{target} depends on '{feature}', which the gateway does not support"
        if reason:
            detail += f" ({reason})"
        super().__init__(detail, extra={"feature": feature, "operationId": operation_id})
        self.feature = feature
        self.operation_id = operation_id


class PolicyEvaluationError(BadRequestError):
    """A supported policy could not compute its result for this call.

    For example a host URL template that yields no host, or a route template naming a
    path parameter the call did not supply.
    """

    status = 400
    code = "policy_evaluation_failed"
    title = "Policy could not be applied"

    def __init__(self, template_id: str, detail: str) -> None:
        super().__init__(f"policy '{template_id}': {detail}", extra={"templateId": template_id})
        self.template_id = template_id
