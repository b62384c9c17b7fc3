"""From a source to token ids: reading a source (sources.py: a Hub dataset, a file or a folder of splits), the
canonical columns and leak-free splits (splits.py), prompt/completion and chat templates (templates.py), token ids
(tokenization.py), and the offline sample tuneops makes for the demo and the tests (sample.py). May import
config/ and io/."""
