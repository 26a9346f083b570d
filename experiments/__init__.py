"""Entry points and configs of the experiments."""
