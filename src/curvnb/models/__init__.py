"""Models used across the book."""
from curvnb.models.cnn import CNN1D, SimpleCNN
from curvnb.models.mlp import DeepMLP, deep_mlp, neural_chain
from curvnb.models.reversible import ReversibleNet
