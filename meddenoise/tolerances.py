"""Geometric tolerances that several layers apply, each defined once (numbers only, no imports)."""

TILT_TOLERANCE_DEG = 0.1
"""Gantry tilt (the angle between the slice normal and the stacking direction) treated as none."""

POSITION_TOLERANCE_MM = 0.1
"""Two slices are at the same position when their offsets along the normal differ by at most this:
well below any slice spacing, well above the rounding of positions in real headers. Pairs slices
of a denoised series with its reference, and real low-dose with full-dose training pairs."""
