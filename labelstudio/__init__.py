"""Label Studio adapter (the only package importing label_studio_sdk). Not implemented yet."""
