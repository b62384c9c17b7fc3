"""The MLflow Model Registry: logging, registering and loading versions, the champion alias and lineage tags
(store.py), and the catalog of every servable version by OpenAI model id (catalog.py). May import every layer
below it (config/ to training/), never inference/, jobs/ or a front-end."""
