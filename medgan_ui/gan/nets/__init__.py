"""Network definitions, one module per model family (no training logic here)."""
