"""Generic reconciler over tables whose rows carry a Status."""
