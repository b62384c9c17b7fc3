"""How a model is judged, each defined once: classification metrics (metrics.py), a causal LM's teacher-forced
loss and its generated completions against the expected ones and trivial baselines (lm_scoring.py), and the
promotion gate (gate.py, pure). May import config/, io/, data/, models/ and quality/ (its text measures)."""
