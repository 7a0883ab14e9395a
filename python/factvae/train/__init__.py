"""Training: minibatches, devices and precision, the loop that steps the optimisers,
progress, checkpoints, several processes, and the allocator."""
