"""The cluster registry: instance heartbeats and stats, and each user's connections over
the cluster (the cluster-wide cap). ``redis.py`` keeps them in Redis."""
