"""Ray Serve: CLIP text / image encoders, the scene tagger (the batch job's own code) and exported heads
behind one FastAPI ingress (DESIGN §6). config.py (deployments, batching, limits), models.py (the model
deployments), app.py (the ingress, the application builder, the Serve config file), run.py (`movielib serve`)."""
