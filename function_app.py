"""Azure Functions entry point (Python v2 model): it only wraps the ASGI app and
schedules the background jobs."""

import azure.functions as func

from functions import jobs
from functions.api.buffered_host import BufferedHostLimits
from functions.app import create_app

# The host holds request and response bodies whole: BufferedHostLimits states the limits.
app = func.AsgiFunctionApp(
    app=BufferedHostLimits(create_app()), http_auth_level=func.AuthLevel.ANONYMOUS
)


@app.timer_trigger(schedule="0 */15 * * * *", arg_name="timer", run_on_startup=False)
async def cleanup_connections(timer: func.TimerRequest) -> None:
    await jobs.cleanup_connections()


@app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False)
async def refresh_due_tokens(timer: func.TimerRequest) -> None:
    await jobs.refresh_due_tokens()


# Connection-health webhooks (issue 19): drains the events queue and delivers due
# webhooks every 30 s; a slow receiver delays only this job, never an invocation.
@app.timer_trigger(schedule="*/30 * * * * *", arg_name="timer", run_on_startup=False)
async def deliver_webhooks(timer: func.TimerRequest) -> None:
    await jobs.deliver_webhooks()
