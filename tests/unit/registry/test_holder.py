"""Following an alias: a moved alias's version swapped in only once its engine is ready."""

from __future__ import annotations

from tuneops.registry.holder import ModelHolder
from tuneops.registry.served import ModelInfo, Served


def test_an_alias_moves_only_once_the_new_versions_engine_is_ready():
    """serve.engine: vllm starts a process per version (80-110 s): the alias keeps answering with the old version
    until the new one's engine says it is ready, and `live` keeps both until then."""

    def version(v):
        return Served(None, None, ModelInfo(name="m", version=v, alias="champion", model_uri=f"models:/m/{v}"))

    ready = {"1": True, "2": False}
    clock = [0.0]
    holder = ModelHolder(
        version("1"),
        lookup=lambda: "2",
        load=version,
        refresh_seconds=1.0,
        clock=lambda: clock[0],
        ready=lambda served: ready[served.info.version],
    )
    clock[0] += 2
    assert holder.current().info.version == "1"  # loaded, its engine still starting
    ready["2"] = True
    assert holder.current().info.version == "1"  # checked again only after refresh_seconds
    clock[0] += 2
    assert holder.current().info.version == "2"
