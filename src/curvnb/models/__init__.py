"""Models used across the book."""
from curvnb.models.cnn import CNN1D, SimpleCNN
