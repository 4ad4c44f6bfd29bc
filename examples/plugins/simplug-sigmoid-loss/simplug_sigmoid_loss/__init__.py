"""simplug-sigmoid-loss: the pairwise sigmoid loss for simplug."""
