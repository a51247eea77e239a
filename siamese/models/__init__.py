"""The encoder f: networks (MLP, conv), the Autoencoder with its six variants, its fingerprint,
distance metrics, saving and (untrusted) loading, and the hand-off of items into a model's input
space."""
