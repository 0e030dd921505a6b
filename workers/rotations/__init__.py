"""Rotations as the API shows and changes them: views, binding to a schedule, schedule search,
and the one lock order for bound rotations."""
