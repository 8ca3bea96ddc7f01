"""Running a sweep on Ray: from a spec to trials, the searcher and schedulers that choose and stop them,
the trainable, the recorder that keeps what they report, the cluster session, the lease, and confirm."""
