"""The embedded default: a local S3-compatible server and a generated sample catalog."""
