"""leae_jax: a self-teaching autoencoder trained only by agreement in its own latent space."""
