"""Lightning modules: they orchestrate training and attack evaluation; the attacks and
defenses themselves are plain PyTorch."""
