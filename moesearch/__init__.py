"""moesearch: which feed-forward activation should each layer of a DeepSpeed MoE transformer use?"""

__version__ = "0.1.0"
