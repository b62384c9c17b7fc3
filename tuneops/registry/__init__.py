"""The MLflow Model Registry: logging, registering and loading versions, the champion alias and lineage tags
(store.py), and the catalog of every servable version by OpenAI model id (catalog.py; a loaded version: served.py;
a followed alias: holder.py; the registry it reads: mlflow_registry.py; a job's checkpoints: checkpoints.py). May
import every layer below it (config/ to training/), never inference/, jobs/ or a front-end."""
