"""The training loop, its learner strategies and checkpoints."""
