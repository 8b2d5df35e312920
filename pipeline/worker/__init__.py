"""The worker: the faust app's batch loop and the per-partition outputs it commits."""
