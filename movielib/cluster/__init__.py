"""Running movielib on Ray clusters: job submission (the manifests live in the repository's cluster/)."""
