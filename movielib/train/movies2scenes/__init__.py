"""Movies2Scenes (papers/movies2scenes.txt §3, supp. §1): scene representations from movie similarity.

similarity.py  step 1: E_learnable + shot/scene adjacency pooling -> is this movie pair similar?
pairs.py       step 2: 9x9 window means of the learned adjacency -> non-overlapping scene pairs
encoder.py     step 3: a CLIP ViT over n shots x k frames (2-D interpolated position embeddings)
moco.py        step 3: momentum contrast (InfoNCE over a queue of keys, momentum key encoder)
"""
