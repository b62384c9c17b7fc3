"""OpenAI's files and fine-tuning jobs routes as one router, so code written for OpenAI's fine-tuning API runs
against tuneops (files: tuneops/serve/finetuning/files.py; jobs: tuneops/serve/finetuning/jobs.py). They share the
app's OpenAI error handlers."""

from __future__ import annotations

from fastapi import APIRouter

from tuneops.serve.finetuning import files, jobs

router = APIRouter()
router.include_router(files.router)
router.include_router(jobs.router)
