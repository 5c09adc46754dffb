"""Built-in pipeline plugins; each registers through the same hooks as a third-party plugin."""
