"""Fine-tuning: the transformers Trainer as params.yaml configures it (trainer.py), resumable checkpoints
(checkpoints.py), the device and precision (devices.py), memory handed back on CPUs (memory.py), and torchrun
(launch.py). May import config/, io/, data/, models/ and evaluation/ (the metrics model selection uses)."""
