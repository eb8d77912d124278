"""The two training engines, one contract (same params, same outputs, same checkpoints to resume from):
`trainer` (the Hugging Face Trainer, engines/trainer.py) and `accelerate` (a hand-written Accelerate
loop, engines/loop.py). What they share is in engines/base.py."""
