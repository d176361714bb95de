"""Photos in and tensors out: decoding, the photo cache, datasets, transforms, samplers, mixing, a run's data."""
