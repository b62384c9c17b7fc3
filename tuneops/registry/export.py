"""Continued fine-tuning: a fine-tuned model as a folder a new job trains from (its model.name).

A registered version (its `ft:` id, or `<name>:<version>`) or a job's checkpoint (its `ft:...:ckpt-step-<step>`
id) is loaded the way `tuneops serve` loads it (registry.catalog: the registry's artifacts, a LoRA checkpoint
merged into its base) and saved in Hub format: config.json, model.safetensors, generation_config.json and the
tokenizer with its chat template. An alias id is refused: it moves, and a job must know what it started from.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.config.errors import UserError
from tuneops.config.paths import JOBS_DIR
from tuneops.io.files import write_json
from tuneops.registry.catalog import Catalog, ModelNotFound, parse_model_id
from tuneops.registry.checkpoints import parse_checkpoint_id
from tuneops.registry.mlflow_registry import MlflowRegistry
from tuneops.registry.served import Served

if TYPE_CHECKING:
    from tuneops.config.params import GenerationParams, RegisterParams

log = logging.getLogger("tuneops.registry")

EXPORTED_DIR = JOBS_DIR / "exported"  # the jobs API's scratch under the project root (git- and DVC-ignored)
EXPORT_RECORD = "tuneops_export.json"  # in an exported folder: the id it was exported from, and what that named


def export_dir(root: Path, model_id: str) -> Path:
    """Where `model_id` is exported: its id in file-name characters, and a hash of the whole id, since two ids
    may read the same once their ':' and '/' are replaced."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._-")[:96]
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return root / EXPORTED_DIR / f"{readable}-{digest}"


def export_for_training(
    model_id: str, root: Path, register: RegisterParams, generation: GenerationParams | None = None
) -> Path:
    """The Hub-format folder of `model_id` (an ft: id, `<name>:<version>` or a checkpoint id) under
    `<root>/jobs/exported/`, for a job's model.name. Made once: the same id gives the same folder, already there
    on a second call. Written to a staging folder and renamed into place, so a reader never sees half of one.

    `register`: the registry to read (its tracking_uri; its alias is what a bare `<name>` would follow);
    `generation`: params.yaml's generation settings, the chat template for a version registered without one.
    UserError for an alias id or an id that names nothing.
    """
    target = export_dir(root, model_id)
    if target.is_dir():
        return target
    if parse_checkpoint_id(model_id) is None and parse_model_id(model_id, register.alias).alias is not None:
        raise UserError(f"{model_id}: an alias moves; export one version, by its ft: id or <name>:<version>")
    catalog = Catalog(MlflowRegistry(register, generation), cache_size=1, default_alias=register.alias, root=root)
    try:
        served = catalog.get(model_id)
    except ModelNotFound:
        raise UserError(f"{model_id}: no registered version or job checkpoint answers to it") from None
    publish(target, lambda staging: save(served, model_id, staging))
    log.info("exported %s to %s", model_id, target)
    return target


def save(served: Served, model_id: str, folder: Path) -> None:
    """The model and tokenizer in Hub format, and a record of what they are."""
    served.model.save_pretrained(folder, safe_serialization=True)
    served.tokenizer.save_pretrained(folder)
    write_json(folder / EXPORT_RECORD, {"model": model_id, **served.info.model_dump(include={"name", "version"})})


def publish(target: Path, write: Callable[[Path], None]) -> None:
    """`write` into a fresh staging folder beside `target`, then rename it to `target`. Another export of the same
    id that finished first keeps its folder (a rename onto a folder with files fails): this one is dropped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    staging.chmod(0o755)  # mkdtemp's 0700 would keep a job run as another user out
    try:
        write(staging)
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        log.info("%s was exported meanwhile: keeping that one", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
