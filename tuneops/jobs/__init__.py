"""Work that outlives a request: OpenAI fine-tuning jobs (spec.py: the request and its params overrides;
states.py: status and errors; events.py: events, and results.py: checkpoints and the result file, read back from a
job's workspace), the uploaded files (file_store.py; file_check.py: what an upload is checked for), Prefect's
client (orchestration.py: deployments, submitting, reading, cancelling and resuming flow runs), one run per
workspace (workspace.py) and DVC-queue sweeps (sweep.py). May import every layer below it; never flows/ (a
deployment names the flow by its entrypoint) nor a front-end."""
