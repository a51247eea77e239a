"""What a trained model computes: embeddings, latent codes on disk, reconstructions, VAE samples and
anomaly scores."""
