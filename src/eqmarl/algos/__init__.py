"""Learning algorithms: GAE and the PPO loss (pure functions over tensors)."""
