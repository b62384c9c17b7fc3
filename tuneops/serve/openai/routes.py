"""OpenAI's routes over the registered models, one router for the app: GET /v1/models (models.py),
POST /v1/completions (completions.py), POST /v1/chat/completions (chat.py); what they share is common.py's, and
their errors are tuneops.serve.errors'.
"""

from __future__ import annotations

from fastapi import APIRouter

from tuneops.serve.errors import API_PREFIX
from tuneops.serve.openai import chat, completions, models

router = APIRouter(prefix=API_PREFIX, tags=["OpenAI-compatible"])
router.include_router(models.router)
router.include_router(completions.router)
router.include_router(chat.router)
