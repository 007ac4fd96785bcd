"""Model loaders: every model is built from a name plus a weights URI (open_clip style)."""
