"""URIs and filesystems (local paths, s3:// with an endpoint override), video probe and decode."""
