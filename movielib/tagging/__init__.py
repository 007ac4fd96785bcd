"""CLIPSceneScore and MovieCLIP's clean-subset rules."""
