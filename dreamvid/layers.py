"""InceptionV3's dreamable layers: names and channel counts (constants, importable from anywhere)."""

LAYER_NAMES = tuple(f"mixed{i}" for i in range(11))
# channels of each layer's output in InceptionV3 (whatever the input size), to check mixed4[i] before any run
LAYER_CHANNELS = dict(zip(LAYER_NAMES, (256, 288, 288, 768, 768, 768, 768, 768, 1280, 2048, 2048)))
