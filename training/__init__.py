"""Training: aligned face datasets (extract), the swap autoencoder (train) and its card
(evaluate)."""
